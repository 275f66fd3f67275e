"""The signed-in landing page."""

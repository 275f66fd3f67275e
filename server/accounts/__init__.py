"""Users, roles, districts, sessions, API and device tokens, and the audit log."""

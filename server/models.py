"""Imports every area's models so the metadata is complete (Alembic, tests)."""


def import_all_models() -> None:
    import server.accounts.models  # noqa: F401
    import server.catalog.models  # noqa: F401
    import server.intake.models  # noqa: F401
    import server.registry.models  # noqa: F401
    import server.review.models  # noqa: F401

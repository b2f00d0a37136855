"""Storage: tables, engines, migrations and the compact activation codec."""

from interpedia.db import nul as _nul  # noqa: F401  (registers the NUL rule: ORM writes and statement parameters)
from interpedia.db.engine import make_engine, make_sessionmaker, migrate, transaction

__all__ = ["make_engine", "make_sessionmaker", "migrate", "transaction"]

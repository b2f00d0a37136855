"""Storage: tables, engines, migrations and the compact activation codec."""

from interpedia.db.engine import make_engine, make_sessionmaker, migrate, transaction

__all__ = ["make_engine", "make_sessionmaker", "migrate", "transaction"]

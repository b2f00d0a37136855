"""What the commands share: the database they work on, logging, and MODEL/SOURCE arguments."""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from interpedia.config import Settings


def setup_logging(settings: Settings) -> None:
    """Log to stderr at INTERPEDIA_LOG_LEVEL."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def factory_for(settings: Settings, *, migrate_first: bool = True) -> Any:
    """A session factory on INTERPEDIA_DATABASE_URL, migrated first (over the direct URL) unless told not to."""
    from interpedia.db import make_engine, make_sessionmaker, migrate

    if migrate_first:
        migrate(settings.database_url_direct)
    return make_sessionmaker(make_engine(settings.database_url))


def split_source(value: str) -> tuple[str, str]:
    """``MODEL/SOURCE`` into its two ids (a usage error naming --source otherwise)."""
    model_id, _, source_id = value.partition("/")
    if not model_id or not source_id or "/" in source_id:
        raise click.BadParameter("expected MODEL/SOURCE, e.g. gpt2-small/6-res-jb", param_hint="--source")
    return model_id, source_id

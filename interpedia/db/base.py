"""The declarative base, id scheme and column helpers every table module shares."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Integer,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only autoincrements INTEGER PRIMARY KEY; Postgres wants BIGINT for 10^9 activations.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonList = JSON(none_as_null=True)

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A 25-character, time-ordered, collision-resistant id in the style of Neuronpedia's cuids."""
    millis = int(time.time() * 1000)
    stamp = ""
    while millis:
        millis, digit = divmod(millis, 36)
        stamp = _ALPHABET[digit] + stamp
    tail = "".join(secrets.choice(_ALPHABET) for _ in range(24 - len(stamp)))
    return "c" + stamp + tail


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every interpedia table."""

    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JsonList}


def _created() -> Mapped[dt.datetime]:
    return mapped_column(DateTime, default=_now, server_default=func.current_timestamp(), nullable=False)

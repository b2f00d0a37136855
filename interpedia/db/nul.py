"""The NUL rule for text: a NUL character becomes a space, on SQLite and Postgres alike.

Postgres ``text`` cannot hold NUL (psycopg refuses the value), SQLite can: without one rule the same
API call would store a NUL on one backend and fail on the other. The importers already turn NUL into
a space, as Neuronpedia's importer does (``interpedia.ingest.validate.without_nul``); this listener
applies the same rule to every ORM write (API routes, forms, the CLI), so no code path can store a NUL
and none fails on Postgres because of one. Bulk inserts of the importer bypass the ORM and clean
their values themselves.

The same rule covers what is looked up: a NUL in a URL, a query parameter or a JSON body would make
psycopg refuse the SELECT (a 500); read as a space, it simply finds nothing (404), as on SQLite.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, UOWTransaction


def without_nul(value: Any) -> Any:
    """The value with NUL characters in its strings (in lists and dicts too, keys included) made spaces."""
    if isinstance(value, str):
        return value.replace("\x00", " ") if "\x00" in value else value
    if isinstance(value, list):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def _has_nul(value: Any) -> bool:
    t = type(value)
    if t is str:
        return "\x00" in value
    if t is list:  # numeric arrays are common: recurse only into the elements that can hold text
        return any(("\x00" in v) if type(v) is str else (type(v) in (list, dict) and _has_nul(v)) for v in value)
    if t is dict:
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


@event.listens_for(Session, "before_flush")
def _nul_to_space(session: Session, flush_context: UOWTransaction, instances: Any) -> None:
    """Replace NUL in the loaded column values of new and changed objects before they are written."""
    for obj in (*session.new, *session.dirty):
        state = inspect(obj)
        loaded = state.dict  # only values already in memory: reading others would load them
        for attr in state.mapper.column_attrs:
            value = loaded.get(attr.key)
            if value is not None and not isinstance(value, (bytes, int, float)) and _has_nul(value):
                setattr(obj, attr.key, without_nul(value))


def _clean_params(params: Any) -> Any:
    """The parameters with the NUL rule applied; the same object when no value holds a NUL (the usual case)."""
    if isinstance(params, dict):
        values: Any = params.values()
    elif isinstance(params, (list, tuple)):
        values = params
    else:
        return params
    # Hot path (every statement): exact type checks, and only str and list values can hold text.
    for v in values:
        t = type(v)
        if (t is str and "\x00" in v) or (t is list and _has_nul(v)):
            break
    else:
        return params
    if isinstance(params, dict):
        return {k: without_nul(v) if isinstance(v, (str, list)) else v for k, v in params.items()}
    return type(params)(without_nul(v) if isinstance(v, (str, list)) else v for v in params)


@event.listens_for(Engine, "before_cursor_execute", retval=True)
def _nul_free_parameters(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> tuple[str, Any]:
    """Single statements (lookups, ORM writes) never send a NUL: bulk inserts are cleaned by their writers."""
    if executemany or not parameters:
        return statement, parameters
    return statement, _clean_params(parameters)

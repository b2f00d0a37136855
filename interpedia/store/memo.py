"""Answers a session remembers until its transaction ends: a second identical lookup in one request is free.

A page asks some questions more than once through different code paths (the feature page finds its source by
name, then the live-inference check finds it again; the check reads the model's and the source's latest
generate run, which the page's one catalogue statement already fetched). Each such lookup keeps its answer in
``session.info`` under its own name; the answers are dropped when the session's outermost transaction ends
(commit, rollback, close), so nothing outlives the snapshot it was read in.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

__all__ = ["remembered"]

_KEY = "interpedia.memo"


def remembered(session: Session, name: str) -> dict[Any, Any]:
    """The session's memo called ``name`` (empty at the start of each transaction)."""
    memos: dict[str, dict[Any, Any]] = session.info.setdefault(_KEY, {})
    return memos.setdefault(name, {})


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: savepoints keep the memo
        session.info.pop(_KEY, None)

"""Rate-limit token buckets kept in the database, so that every serving process counts against one budget.

``interpedia serve --workers N`` runs N processes, and a team may run several servers on one database: buckets held
in each process would let a caller make N times the configured requests. Here each (route pattern, caller) bucket
is a row of ``rate_limit_buckets``, refilled and spent by one upsert (``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING``): the database serialises concurrent hits on a row, so no two processes spend the same token.
"""

from __future__ import annotations

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from interpedia.db.tables import RateLimitBucket

__all__ = ["forget_full_buckets", "spend_token"]

# Refill since the last hit (capped at the limit), then spend one token if there is one. Both dialects accept
# this statement (SQLite >= 3.35 for RETURNING); ``b`` is the row already there.
_SPEND = text(
    """
    INSERT INTO rate_limit_buckets AS b (key, tokens, stamp, allowed)
    VALUES (:key, :limit - 1.0, :now, :limit >= 1)
    ON CONFLICT (key) DO UPDATE SET
        tokens = CASE
            WHEN min_refill >= 1.0 THEN min_refill - 1.0 ELSE min_refill END,
        stamp = :now,
        allowed = min_refill >= 1.0
    RETURNING tokens, allowed
    """
)


def _statement(dialect: str) -> str:
    refill = "b.tokens + (CAST(:now AS FLOAT) - b.stamp) * :rate"
    capped = f"LEAST(CAST(:limit AS FLOAT), {refill})" if dialect == "postgresql" else f"MIN(:limit, {refill})"
    return str(_SPEND.text).replace("min_refill", f"({capped})")


def spend_token(session: Session, key: str, limit: int, rate: float, now: float) -> float:
    """Spend one request of bucket ``key`` (``limit`` tokens, ``rate`` tokens refilled per second, ``now`` in
    seconds since the epoch); 0.0 when allowed, else the seconds until the next request would be."""
    dialect = session.get_bind().dialect.name
    row = session.execute(
        text(_statement(dialect)), {"key": key, "limit": float(limit), "rate": rate, "now": now}
    ).one()
    if row.allowed:
        return 0.0
    return max(0.0, (1.0 - float(row.tokens)) / rate)


def forget_full_buckets(session: Session, older_than: float) -> int:
    """Delete buckets not hit since ``older_than`` (a whole window ago: they are full again, and a missing row
    is a full bucket); returns how many."""
    result = session.execute(delete(RateLimitBucket).where(RateLimitBucket.stamp < older_than))
    return int(getattr(result, "rowcount", 0) or 0)

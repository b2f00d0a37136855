"""Dependencies of the /v1 routes."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Header

from interpedia.errors import Unauthorized
from interpedia.web.deps import SettingsDep


def require_secret(
    settings: SettingsDep, x_secret_key: Annotated[str | None, Header(alias="X-SECRET-KEY")] = None
) -> None:
    """401 unless the X-SECRET-KEY header matches INTERPEDIA_SECRET (no check when it is unset)."""
    if not settings.secret:
        return
    if x_secret_key is None or not hmac.compare_digest(x_secret_key.encode(), settings.secret.encode()):
        raise Unauthorized("missing or wrong X-SECRET-KEY header (INTERPEDIA_SECRET is set on this server)")

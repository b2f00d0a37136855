"""Absolute URLs in answers (list, upload, vector, explanation, steer-share and graph links): one helper.

With ``INTERPEDIA_PUBLIC_BASE_URL`` set, links start with it. Unset (the default), they are built from the
request: its scheme and ``Host`` header, so a server on any port, or reached by any name, answers links that
open. Behind your own reverse proxy (``INTERPEDIA_TRUST_FORWARDED_FOR=true``), the proxy's
``X-Forwarded-Proto`` and ``X-Forwarded-Host`` win; without that setting they are ignored, since any client
can send them. The same answer decides whether the session cookie is ``Secure`` and whether HSTS is sent.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import Scope

from interpedia.config import Settings

__all__ = ["absolute_url", "page_path", "public_origin", "scope_origin", "served_over_https"]

# A host name or address with an optional port; anything else in a forwarded header is ignored.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def page_path(*parts: Any) -> str:
    """A path from segments, each percent-encoded: ``page_path("m", "0-res", 3)`` -> ``/m/0-res/3``."""
    return "/" + "/".join(quote(str(p), safe="") for p in parts)


def _last(value: str | None) -> str:
    # A chain of proxies appends; the last value is the one our own proxy wrote.
    return (value or "").split(",")[-1].strip()


def scope_origin(scope: Scope, settings: Settings) -> str:
    """``scheme://host[:port]`` that clients reach this server at, for a raw ASGI scope (no trailing slash)."""
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    headers = Headers(scope=scope)
    scheme = str(scope.get("scheme") or "http")
    host = headers.get("host", "")
    if settings.trust_forwarded_for:
        proto = _last(headers.get("x-forwarded-proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = _last(headers.get("x-forwarded-host"))
        if forwarded_host and _HOST.match(forwarded_host):
            host = forwarded_host
    if not host or not _HOST.match(host):
        server = scope.get("server")
        if server:
            address, port = server[0], server[1]
            host = f"[{address}]" if ":" in str(address) else str(address)
            default = 443 if scheme == "https" else 80
            host += "" if port in (None, default) else f":{port}"
        else:
            host = "localhost"
    return f"{scheme}://{host}"


def public_origin(request: Request) -> str:
    """The origin links in this request's answer start with (no trailing slash)."""
    return scope_origin(request.scope, request.app.state.settings)


def absolute_url(request: Request, path: str) -> str:
    """``path`` (starting with ``/``) as an absolute URL clients can open."""
    return public_origin(request) + (path if path.startswith("/") else "/" + path)


def served_over_https(scope: Scope, settings: Settings) -> bool:
    """True when clients reach this server over HTTPS (Secure cookies, HSTS)."""
    return scope_origin(scope, settings).startswith("https://")

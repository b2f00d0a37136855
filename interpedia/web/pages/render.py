"""Turning page data into responses: HTML through Jinja2 (autoescaped) or the page's JSON twin.

Every page handler builds one plain dict, the page's data. A browser gets it rendered as HTML; a
client that asks for ``Accept: application/json`` (without ``text/html``), or puts ``.json`` after
the URL's last segment, gets the same dict as JSON.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy.orm import Session

from interpedia import __version__
from interpedia.config import Settings
from interpedia.errors import Unauthorized, UserError
from interpedia.store.formats import dumps
from interpedia.web.errors import error_response
from interpedia.web.pages.session import CSRF_FIELD, current_user, manager
from interpedia.web.urls import page_path

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

# Pages never need inline script or style: everything is in /static (and SVG attributes).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
HTML_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
JSON_SUFFIX = ".json"
# First path segments that belong to other parts of the app, never to a model id.
NOT_PAGES = frozenset({"api", "v1", "static", "docs", "redoc", "openapi.json", "health"})


def split_json(segment: str) -> tuple[str, bool]:
    """``'14.json'`` -> ``('14', True)``; any other segment comes back unchanged with False."""
    if segment.endswith(JSON_SUFFIX) and len(segment) > len(JSON_SUFFIX):
        return segment[: -len(JSON_SUFFIX)], True
    return segment, False


def wants_json(request: Request, suffix: bool = False) -> bool:
    """True for the JSON twin: a ``.json`` suffix, or an Accept header asking for JSON and not HTML."""
    if suffix:
        return True
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def is_page_path(path: str) -> bool:
    """True when ``path`` is served by the pages (so errors there may be HTML)."""
    first = path.lstrip("/").split("/", 1)[0]
    return first not in NOT_PAGES


page_url = page_path  # the pages' name for it


def _static_versions() -> dict[str, str]:
    out = {}
    for path in STATIC.rglob("*"):
        if path.is_file():
            out[path.relative_to(STATIC).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:10]
    return out


def _num(value: Any, digits: int = 3) -> str:
    """A number for people: fixed decimals without trailing zeros; '–' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = f"{float(value):.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _pct(value: Any) -> str:
    """A fraction as a percentage with three significant digits."""
    if value is None:
        return "–"
    return f"{float(value) * 100:.3g}%"


def _href(value: Any) -> str:
    """An external link only when it is http(s); anything else (``javascript:``...) becomes ``#``."""
    text = str(value or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else "#"


class Renderer:
    """The app's template environment and response helpers."""

    def __init__(self, settings: Settings) -> None:
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=StrictUndefined,
            auto_reload=settings.env == "development",
            trim_blocks=True,
            lstrip_blocks=True,
        )
        versions = _static_versions()
        self.env.globals.update(
            static=lambda name: f"/static/{name}?v={versions.get(name, __version__)}",
            url=page_url,
            version=__version__,
            csrf_field=CSRF_FIELD,
        )
        self.env.filters.update(num=_num, pct=_pct, href=_href)

    def html(
        self,
        request: Request,
        db: Session | None,
        template: str,
        data: dict[str, Any],
        *,
        status: int = 200,
        **view: Any,
    ) -> HTMLResponse:
        """Render ``template`` with the page data, the signed-in user and a CSRF token getter."""
        user = current_user(request) if db is not None else None
        sess = manager(request).load(request)
        body = self.env.get_template(template).render(
            data=data, user=user, csrf=sess.token, path=request.url.path, **view
        )
        response = HTMLResponse(body, status_code=status, headers=HTML_HEADERS)
        manager(request).save(request, response)
        return response

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        """An HTML error page (the JSON error shape stays for the API and the JSON twins)."""
        body = self.env.get_template("error.html").render(
            data={"status": status, "message": message}, user=None, csrf=lambda: "", path=request.url.path
        )
        return HTMLResponse(body, status_code=status, headers=HTML_HEADERS)


def json_page(data: Any, status: int = 200) -> Response:
    """The JSON twin of a page."""
    return Response(dumps(data), status_code=status, media_type="application/json")


def twin_url(request: Request) -> str:
    """The URL of the page's JSON twin: ``.json`` after the last path segment (``/`` -> ``/index.json``)."""
    path = request.url.path.rstrip("/")
    twin = (path if path else "") + ("/index.json" if not path else JSON_SUFFIX)
    return twin + (f"?{request.url.query}" if request.url.query else "")


def page(
    request: Request,
    session: Session | None,
    template: str,
    data: dict[str, Any],
    *,
    as_json: bool = False,
    status: int = 200,
    html_view: Callable[[], dict[str, Any]] | None = None,
    json_data: dict[str, Any] | None = None,
    **view: Any,
) -> Response:
    """A page: its JSON twin (``data`` as it is) when the URL ends in ``.json`` (``as_json``) or the client asks
    for JSON, else ``template`` rendered with ``data`` and ``view``, linking its twin (``Link: rel=alternate``).

    ``html_view`` returns more template variables; it is called only when HTML is rendered, so work the twin
    does not need (drawing, live-inference checks, the viewer's menus) is never done for it. ``json_data``, when
    given, is what the twin writes instead of ``data``: the same content, with parts already serialised
    (``orjson.Fragment``)."""
    if wants_json(request, as_json):
        return json_page(data if json_data is None else json_data, status)
    if html_view is not None:
        view.update(html_view())
    response = renderer(request).html(request, session, template, data, status=status, **view)
    response.headers["Link"] = f'<{twin_url(request)}>; rel="alternate"; type="application/json"'
    return response


def signin_first(
    request: Request, signin_url: str, *, as_json: bool = False, message: str = "sign in first (/signin)"
) -> Response:
    """A page that needs a signed-in user, asked by nobody: a browser is sent to sign in (``signin_url``), the
    JSON twin answers 401 with ``message``."""
    if wants_json(request, as_json):
        raise Unauthorized(message)
    return redirect(request, signin_url)


def redirect(request: Request, url: str, status: int = 303) -> RedirectResponse:
    """A redirect that also saves a changed session (sign-in, sign-out)."""
    response = RedirectResponse(url, status_code=status)
    manager(request).save(request, response)
    return response


def renderer(request: Request) -> Renderer:
    """The app's renderer."""
    return request.app.state.pages  # type: ignore[no-any-return]


def form_page(
    request: Request,
    session: Session | None,
    template: str,
    data: dict[str, Any],
    error: UserError | None = None,
    *,
    as_json: bool = False,
    status: int = 200,
    **view: Any,
) -> Response:
    """A form's page (:func:`page`), maybe after bad input: then the HTML is the form again with the error's status
    (the caller puts the message in ``data`` where its template shows it) and the JSON twin is the one error shape.
    Without an error the page answers ``status``."""
    if error is not None and wants_json(request, as_json):
        return error_response(error.status, error.message, error.field)
    return page(request, session, template, data, as_json=as_json, status=error.status if error else status, **view)


def form_error(errors: dict[str, str], status: int) -> UserError | None:
    """The first of a form's field errors (``{field: message}``, what its template shows) as the error
    :func:`form_page` answers, with ``status``; None when there are none."""
    if not errors:
        return None
    field, message = next(iter(errors.items()))
    return UserError(message, field, status=status)


def done(
    request: Request, url: str, doc: Any, *, as_json: bool = False, status: int = 200, redirect_status: int = 303
) -> Response:
    """A form action that worked (or a GET that only points elsewhere, like ``/random``): ``doc`` for a client
    that asks for JSON (with ``status``), else a redirect to ``url`` (post/redirect/get)."""
    if wants_json(request, as_json):
        response: Response = json_page(doc, status)
        manager(request).save(request, response)  # a sign-in or sign-out answered as JSON keeps its cookie
        return response
    return redirect(request, url, status=redirect_status)

"""The web pages: Jinja2 templates and static JS/CSS, each page with a JSON twin.

``install(app)`` mounts ``/static`` and adds the page routes; call it after every other router (the
page routes also refuse ``/api``, ``/v1`` and ``/static`` paths themselves, see ``PageRoute``).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from interpedia.config import Settings
from interpedia.web.pages.render import STATIC, Renderer, is_page_path, split_json, wants_json
from interpedia.web.pages.session import SessionManager

__all__ = ["install"]


def install(app: FastAPI, settings: Settings) -> None:
    """Add the pages, their static files, the session cookie manager and HTML error pages to ``app``."""
    from interpedia.web.pages import (
        account,
        community,
        explanation_search,
        forms,
        graphs,
        inference_pages,
        lens_pages,
        lists,
        quick_list,
        routes,
        steer_pages,
    )

    pages = Renderer(settings)
    app.state.pages = pages
    app.state.web_sessions = SessionManager(settings)

    def html_errors(request: Request, status: int, message: str) -> Response | None:
        path = request.url.path
        last = path.rstrip("/").rsplit("/", 1)[-1]
        if not is_page_path(path) or wants_json(request, split_json(last)[1]):
            return None
        return pages.error(request, status, message)

    app.state.html_errors = html_errors
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    from interpedia.web.pages import analysis as analysis_pages

    app.include_router(analysis_pages.router)  # before routes: /sae-bench is not a model
    app.include_router(forms.router)  # before routes: /model/new must win over /{model}/{layer}
    app.include_router(account.router)  # before routes: /signup, /account are not models
    app.include_router(lists.router)  # before routes: /list/{id} is not /{model}/{layer}
    app.include_router(quick_list.router)  # before routes: /quick-list is not a model
    app.include_router(explanation_search.router)  # before routes: /search-explanations is not a model
    from interpedia.web.pages import autointerp_pane

    autointerp_pane.install(pages.env, settings)  # the feature page's explanations pane
    app.include_router(autointerp_pane.router)  # POST /explanation/explain, /explanation/{id}/score
    app.include_router(community.router)  # before routes: /account/bookmarks is not a model
    app.include_router(inference_pages.router)  # before routes: /search is not a model
    app.include_router(steer_pages.router)  # before routes: /{model}/steer is not a source
    app.include_router(lens_pages.router)  # before routes: /{model}/lens is not a source
    app.include_router(graphs.router)  # before routes: /graph and /{model}/graph are not a model or a source
    app.include_router(routes.router)

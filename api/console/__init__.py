"""The coordinator console: server-rendered pages (Jinja2 + htmx) served by the API app at `/`.

`install(app)` mounts the pages, the static assets (vendored from npm by `vendor.sh`, no CDN)
and the handlers that send signed-out browsers to sign-in and refuse forms without CSRF tokens.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from api.console import analytics, pages, settlement, whatif
from api.console.session import CsrfRefused, SignInRequired

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Serve the console on `app` (pages at /, assets at /console/static)."""
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.include_router(pages.router)
    app.include_router(analytics.router)
    app.include_router(settlement.router)
    app.include_router(whatif.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, error: SignInRequired) -> Response:
        if request.method != "GET":
            return pages.page(
                request,
                "error.html",
                {"status": 401, "problems": ["Sign in again to do that."]},
                401,
            )
        return RedirectResponse("/signin?" + urlencode({"next": error.next_url}), 303)

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, error: CsrfRefused) -> HTMLResponse:
        problems = [
            "The form was missing its security token (CSRF). Reload the page and try again."
        ]
        return pages.page(request, "error.html", {"status": 403, "problems": problems}, 403)

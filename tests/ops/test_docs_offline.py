"""/docs works without internet: the page and every asset it loads come from the API itself."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from pathways.settings import Settings
from tests.api.conftest import serve_in_thread
from tests.ops.processes import free_port


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    served = serve_in_thread(settings.model_copy(update={"api_port": free_port()}))
    yield next(served)
    served.close()


def _references(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


CONTENT_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


def test_docs_page_loads_only_same_origin_assets_and_they_are_served(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        references = _references(page.text)
        assert len(references) >= 3  # script, stylesheet, icon
        assert "cdn" not in page.text and "https://" not in page.text and "http://" not in page.text
        for reference in references:
            url = urljoin(f"{base_url}/docs", reference)
            assert urlsplit(url).netloc == urlsplit(base_url).netloc, reference
            asset = http.get(url)
            assert asset.status_code == 200, reference
            suffix = "." + reference.rsplit(".", 1)[-1]
            assert CONTENT_TYPES[suffix] in asset.headers["content-type"], reference
            assert len(asset.content) > 100
        assert "SwaggerUIBundle" in http.get("/docs/assets/swagger-ui-bundle.js").text
        assert http.get("/openapi.json").status_code == 200
        assert "/docs" not in http.get("/openapi.json").json()["paths"]


def test_docs_render_in_a_headless_browser(base_url: str) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed: headless rendering not checked")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        outside: list[str] = []
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base_url) else None)
        page.goto(f"{base_url}/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        browser.close()
    assert outside == []

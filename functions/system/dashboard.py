"""The staff dashboard's files (``functions/system/dashboard/``) as HTTP responses.

The page is static: it asks for an admin token and calls the same admin API the contract
documents, so the dashboard holds no rule and no data of its own. Files are read on first use
(not at import: the Lambda's cold start pays nothing for them) and kept for the container's life.

Caching: the page itself is ``no-cache`` and names each asset with its content hash
(``dashboard.js?v=<sha256 prefix>``), so the assets can be cached for a year without a deploy
ever serving a stale script.
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DASHBOARD_DIR = Path(__file__).resolve().with_name("dashboard")

JS = "text/javascript; charset=utf-8"
CSS = "text/css; charset=utf-8"
HTML = "text/html; charset=utf-8"

# Served names → content type. Nothing else in the folder is served (the license and the
# vendoring record are for people, not browsers).
ASSETS: Mapping[str, str] = {"dashboard.js": JS, "dashboard.css": CSS, "echarts.min.js": JS}

LONG_CACHE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

# Scripts only from this origin: no inline script, no eval, no CDN. ECharts' tooltips and the
# sizes it gives its own canvases are inline styles, hence 'unsafe-inline' for styles alone.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'self'; form-action 'none'; "
                           "frame-ancestors 'none'")

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class StaticFile:
    body: str
    content_type: str
    version: str   # a prefix of the content's sha256: the cache-busting query of the page

    def headers(self, cache_control: str) -> dict[str, str]:
        return {"Content-Type": self.content_type, "Cache-Control": cache_control, **SECURITY_HEADERS}


_files: dict[str, StaticFile] = {}


def asset(name: str) -> StaticFile:
    """One of ``ASSETS`` (KeyError for any other name)."""
    if name not in _files:
        content_type = ASSETS[name]
        body = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        _files[name] = StaticFile(body, content_type, hashlib.sha256(body.encode("utf-8")).hexdigest()[:12])
    return _files[name]


def page(request_path: str | None, stage: str, demo_openid: str | None) -> str:
    """The page's HTML for a request to ``request_path`` (the path the browser asked for, stage
    prefix included).

    The assets are named relative to a ``<base>`` of that path with one trailing slash: API
    Gateway matches ``/admin`` and ``/admin/`` to this one route, and relative names must
    resolve under ``…/admin/`` either way. ``demo_openid`` (local stages only) offers the
    one-click demo login; no deployed stage accepts its ``dev-`` code anyway.
    """
    template = (DASHBOARD_DIR / "index.html").read_text(encoding="utf-8")
    base = ""
    if request_path and request_path.startswith("/"):
        base = f'<base href="{html.escape(request_path.rstrip("/") + "/", quote=True)}">'
    values = {"base": base, "stage": html.escape(stage, quote=True),
              "demo_code": html.escape(f"dev-{demo_openid}" if demo_openid else "", quote=True)}
    for name in ASSETS:
        values[f"asset:{name}"] = f"{name}?v={asset(name).version}"
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template

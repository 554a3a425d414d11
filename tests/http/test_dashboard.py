"""The staff dashboard at ``/admin/``: the page and its files, with their types, cache and
security headers, documented in the OpenAPI document as non-JSON routes."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from functions.system import dashboard
from functions.system.routes import openapi_document

DASHBOARD_DIR = Path(dashboard.__file__).with_name("dashboard")
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "echarts.min.js": "text/javascript"}


def header(response, name):
    return {k.lower(): v for k, v in response.headers.items()}.get(name.lower())


@pytest.mark.parametrize("path", ["/admin", "/admin/"])
def test_the_page_is_chinese_html_that_is_never_cached_stale(client, path):
    response = client.http.get(path)
    assert response.status_code == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert header(response, "Cache-Control") == "no-cache"
    page = response.body.decode("utf-8")
    assert '<html lang="zh-CN">' in page and "社区工作台" in page and "管理员令牌" in page
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    # Relative asset names resolve under …/admin/ whether the browser asked for /admin or /admin/.
    assert '<base href="/admin/">' in page
    assert "{{" not in page


def test_the_page_names_each_asset_by_its_content_hash(client):
    page = client.http.get("/admin/").body.decode("utf-8")
    for name in ASSETS:
        digest = hashlib.sha256((DASHBOARD_DIR / name).read_bytes()).hexdigest()[:12]
        assert f'"{name}?v={digest}"' in page, name
    # No script from anywhere else, and none inline (the CSP would refuse it anyway).
    scripts = re.findall(r"<script[^>]*>", page)
    assert len(scripts) == 2 and all(re.search(r'src="[a-z.]+\?v=[0-9a-f]{12}"', s) for s in scripts)
    assert "http://" not in page and "https://" not in page


def test_the_local_stage_offers_the_demo_login_of_its_first_admin(client):
    page = client.http.get("/admin/").body.decode("utf-8")
    assert 'data-stage="test"' in page               # tests/conftest.py's stage, a local one
    assert 'data-demo-code="dev-admin-test"' in page  # and its TIMEBANK_ADMIN_OPENIDS


def test_a_deployed_stage_offers_no_demo_login(client, monkeypatch):
    from functions.core import settings

    monkeypatch.setattr(settings, "get_settings", lambda real=settings.get_settings: _deployed(real()))
    monkeypatch.setattr("functions.system.routes.get_settings", settings.get_settings)
    page = client.http.get("/admin/").body.decode("utf-8")
    assert 'data-stage="prod"' in page and 'data-demo-code=""' in page


def _deployed(current):
    from dataclasses import replace

    return replace(current, stage="prod")


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_assets_are_served_with_their_type_a_long_cache_and_the_policy(client, name):
    response = client.http.get(f"/admin/{name}?v=anything")
    assert response.status_code == 200
    assert header(response, "Content-Type") == f"{ASSETS[name]}; charset=utf-8"
    assert header(response, "Cache-Control") == "public, max-age=31536000, immutable"
    assert header(response, "X-Content-Type-Options") == "nosniff"
    assert response.body == (DASHBOARD_DIR / name).read_bytes()


def test_the_content_security_policy_allows_scripts_from_this_origin_only(client):
    policy = header(client.http.get("/admin/"), "Content-Security-Policy")
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["default-src"] == "'none'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"


def test_files_that_are_not_assets_are_not_served(client):
    for path in ("/admin/echarts.json", "/admin/echarts.LICENSE.txt", "/admin/index.html", "/admin/../app.py"):
        response = client.http.get(path)
        # No such route: API Gateway's 403 (the deployed stack maps it to 404 NOT_FOUND).
        assert response.status_code in (403, 404), path
        assert b"Apache" not in response.body and b"sha256" not in response.body, path


def test_vendored_echarts_is_the_pinned_npm_file_with_its_license():
    record = json.loads((DASHBOARD_DIR / "echarts.json").read_text(encoding="utf-8"))
    script = (DASHBOARD_DIR / "echarts.min.js").read_bytes()
    assert hashlib.sha256(script).hexdigest() == record["sha256"]
    assert record["version"] in script.decode("utf-8")[-400:]          # t.version="5.6.0"
    assert script.startswith(b"\n/*\n* Licensed to the Apache Software Foundation")
    assert "Apache License" in (DASHBOARD_DIR / "echarts.LICENSE.txt").read_text(encoding="utf-8")


def test_the_routes_are_documented_as_non_json_and_public():
    paths = openapi_document()["paths"]
    page = paths["/admin"]["get"]
    assert page["x-auth"] == "public" and "security" not in page
    assert list(page["responses"]["200"]["content"]) == ["text/html"]
    assert list(paths["/admin/dashboard.css"]["get"]["responses"]["200"]["content"]) == ["text/css"]
    for name in ("dashboard.js", "echarts.min.js"):
        assert list(paths[f"/admin/{name}"]["get"]["responses"]["200"]["content"]) == ["text/javascript"]

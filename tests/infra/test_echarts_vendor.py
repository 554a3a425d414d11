"""``make vendor-echarts`` writes only the file whose sha256 echarts.json records (the registry is
replaced by a stand-in: the check, not npm, is what is tested here; ``make vendor-echarts CHECK=1``
runs it against the registry)."""
from __future__ import annotations

import hashlib
import json

import pytest

from infra import echarts


@pytest.fixture
def dashboard_copy(tmp_path, monkeypatch):
    for name in ("echarts.json", "echarts.min.js", "echarts.LICENSE.txt"):
        (tmp_path / name).write_bytes((echarts.DASHBOARD_DIR / name).read_bytes())
    monkeypatch.setattr(echarts, "RECORD", tmp_path / "echarts.json")
    monkeypatch.setattr(echarts, "SCRIPT", tmp_path / "echarts.min.js")
    monkeypatch.setattr(echarts, "LICENSE", tmp_path / "echarts.LICENSE.txt")
    return tmp_path


def serve(monkeypatch, script: bytes) -> None:
    packed = {"filename": "echarts-5.6.0.tgz", "integrity": "sha512-stand-in"}
    monkeypatch.setattr(echarts, "fetch", lambda version, workdir: (script, "NOTICE\n----\n\nLICENSE", packed))


def test_the_pinned_file_passes_the_check(dashboard_copy, monkeypatch, capsys):
    serve(monkeypatch, (dashboard_copy / "echarts.min.js").read_bytes())
    assert echarts.main(["--check"]) == 0
    assert "is identical" in capsys.readouterr().out


def test_a_file_with_another_hash_is_refused_and_nothing_is_written(dashboard_copy, monkeypatch, capsys):
    before = (dashboard_copy / "echarts.min.js").read_bytes()
    serve(monkeypatch, b"/* not echarts */")
    assert echarts.main([]) == 1
    assert "not written" in capsys.readouterr().err
    assert (dashboard_copy / "echarts.min.js").read_bytes() == before


def test_an_upgrade_is_written_only_when_asked_and_recorded(dashboard_copy, monkeypatch):
    serve(monkeypatch, b"/* echarts 5.6.1 */")
    assert echarts.main(["--version", "5.6.1"]) == 1
    assert echarts.main(["--version", "5.6.1", "--accept-new-hash"]) == 0
    record = json.loads((dashboard_copy / "echarts.json").read_text(encoding="utf-8"))
    assert record["version"] == "5.6.1"
    assert record["sha256"] == hashlib.sha256(b"/* echarts 5.6.1 */").hexdigest()
    assert (dashboard_copy / "echarts.min.js").read_bytes() == b"/* echarts 5.6.1 */"

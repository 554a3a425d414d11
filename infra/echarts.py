"""``make vendor-echarts``: re-fetch the dashboard's ECharts from the npm registry and check it.

The staff dashboard serves ECharts itself (no CDN at run time, CSP ``script-src 'self'``), so the
minified file is committed in ``functions/system/dashboard/``. This fetches the pinned version
with ``npm pack`` (the registry's own client, which checks the tarball's integrity), takes
``package/dist/echarts.min.js`` and the package's LICENSE and NOTICE, and refuses a file whose
sha256 is not the one recorded in ``echarts.json``::

    python -m infra.echarts            # fetch, check, write (no change if already identical)
    python -m infra.echarts --check    # fetch and compare with the committed file only
    python -m infra.echarts --version 5.6.1 --accept-new-hash   # an upgrade, recorded in echarts.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

DASHBOARD_DIR = Path(__file__).resolve().parents[1] / "functions" / "system" / "dashboard"
RECORD = DASHBOARD_DIR / "echarts.json"
SCRIPT = DASHBOARD_DIR / "echarts.min.js"
LICENSE = DASHBOARD_DIR / "echarts.LICENSE.txt"


class VendorError(Exception):
    pass


def fetch(version: str, workdir: Path) -> tuple[bytes, str, dict[str, str]]:
    """(echarts.min.js, license text, the tarball's name and integrity as npm reports them)."""
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError("npm is not installed (it is needed only to re-fetch ECharts; the file is committed)")
    completed = subprocess.run([npm, "pack", f"echarts@{version}", "--json", "--pack-destination", str(workdir)],
                               cwd=workdir, capture_output=True, text=True, timeout=300)
    if completed.returncode != 0:
        raise VendorError(f"npm pack echarts@{version} failed:\n{completed.stderr.strip()}")
    packed = json.loads(completed.stdout)[0]
    with tarfile.open(workdir / packed["filename"], "r:gz") as archive:
        def member(name: str) -> bytes:
            handle = archive.extractfile(f"package/{name}")
            if handle is None:
                raise VendorError(f"the echarts@{version} tarball has no {name}")
            return handle.read()

        script = member("dist/echarts.min.js")
        license_text = member("NOTICE").decode("utf-8") + "\n----\n\n" + member("LICENSE").decode("utf-8")
    return script, license_text, {"filename": packed["filename"], "integrity": packed["integrity"]}


def main(argv: list[str] | None = None) -> int:
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    parser = argparse.ArgumentParser(prog="python -m infra.echarts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=record["version"])
    parser.add_argument("--check", action="store_true", help="compare with the committed file, write nothing")
    parser.add_argument("--accept-new-hash", action="store_true",
                        help="record the fetched file's sha256 (an upgrade: review the diff)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script, license_text, packed = fetch(args.version, Path(tmp))
    except VendorError as exc:
        print(f"vendor-echarts: {exc}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(script).hexdigest()
    expected = record["sha256"] if args.version == record["version"] else None
    if digest != expected and not args.accept_new_hash:
        print(f"vendor-echarts: echarts@{args.version} dist/echarts.min.js has sha256 {digest}, "
              f"echarts.json records {expected or '(another version)'}: not written "
              "(--accept-new-hash records a deliberate upgrade)", file=sys.stderr)
        return 1
    if args.check:
        committed = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()
        same = committed == digest
        print(f"vendor-echarts: npm echarts@{args.version} {digest}; committed file "
              f"{'is identical' if same else 'DIFFERS: ' + committed}")
        return 0 if same else 1
    SCRIPT.write_bytes(script)
    LICENSE.write_text(license_text, encoding="utf-8")
    record.update({"version": args.version, "sha256": digest, "tarball_integrity": packed["integrity"],
                   "tarball": f"https://registry.npmjs.org/echarts/-/{packed['filename']}"})
    RECORD.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"vendor-echarts: wrote {SCRIPT} "
          f"(echarts@{args.version}, {len(script):,} bytes, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Put the runtime dependencies into the Chalice project's ``vendor/``, offline.

``chalice package`` would ``pip download`` the requirements for the Lambda platform, which
needs the network. Instead the exact distributions installed in this virtualenv (the pinned
``[project].dependencies`` of pyproject.toml and what they require) are copied file by file
from their installed RECORD. Only pure-Python distributions are accepted: a compiled
extension built for this machine could fail on Lambda, so packaging stops instead.

boto3/botocore are vendored too rather than taken from the Lambda runtime: the runtime's copy
is older and changes without notice, and the import test of the zip can then model Lambda
honestly as "the zip plus the standard library".
"""
from __future__ import annotations

import os
import shutil
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent

# Chalice adds its own runtime (chalice/app.py, chalice/__init__.py) to every package; the
# full distribution (CLI, click, deployer) must not ride along.
PROVIDED_BY_CHALICE = {"chalice"}
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


class VendoringError(RuntimeError):
    pass


def runtime_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    return [Requirement(line) for line in data["project"]["dependencies"]]


def _lambda_environment() -> dict[str, str]:
    # Markers are evaluated for the Lambda runtime (Linux, CPython 3.11), not for this machine.
    environment = default_environment()
    environment.update({"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                        "implementation_name": "cpython",
                        "platform_python_implementation": "CPython",
                        "python_version": "3.11", "extra": ""})
    return environment


def runtime_distributions(requirements: list[Requirement] | None = None) -> list[metadata.Distribution]:
    """The installed distributions the functions need at run time (transitive closure)."""
    environment = _lambda_environment()
    pending = list(requirements if requirements is not None else runtime_requirements())
    found: dict[str, metadata.Distribution] = {}
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in found or name in PROVIDED_BY_CHALICE:
            continue
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        try:
            distribution = metadata.distribution(requirement.name)
        except metadata.PackageNotFoundError:
            raise VendoringError(f"{requirement.name} is required at run time but not installed; "
                                 "run `make` (pip install -e '.[dev]') first") from None
        if not requirement.specifier.contains(distribution.version, prereleases=True):
            raise VendoringError(f"installed {requirement.name} {distribution.version} does not "
                                 f"satisfy {requirement}")
        found[name] = distribution
        pending.extend(Requirement(line) for line in distribution.requires or ())
    return [found[name] for name in sorted(found)]


def vendor_distributions(target: Path, distributions: list[metadata.Distribution]) -> list[str]:
    """Copy each distribution's installed files into ``target``; return ``name==version`` lines."""
    pinned = []
    for distribution in distributions:
        site_packages = Path(distribution.locate_file("")).resolve()
        files = distribution.files
        if files is None:
            raise VendoringError(f"{distribution.metadata['Name']} has no RECORD; reinstall it with pip")
        for relative in files:
            source = Path(distribution.locate_file(relative)).resolve()
            if not _belongs_in_package(source, site_packages):
                continue
            if source.suffix in COMPILED_SUFFIXES:
                raise VendoringError(
                    f"{distribution.metadata['Name']} contains the compiled extension "
                    f"{relative}; build it for Lambda (manylinux) instead of vendoring this one")
            destination = target / source.relative_to(site_packages)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(source, destination)
        pinned.append(f"{distribution.metadata['Name']}=={distribution.version}")
    return pinned


def copy_code_package(package_dir: Path, target: Path) -> None:
    """Copy our own code (a package directory) without caches; real copies, since someone
    debugging a build may well edit them."""
    shutil.copytree(package_dir, target / package_dir.name, copy_function=shutil.copyfile,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
                    dirs_exist_ok=True)


def _belongs_in_package(source: Path, site_packages: Path) -> bool:
    # RECORD also lists console scripts (../../bin) and byte-code caches: neither is needed.
    if site_packages not in source.parents:
        return False
    if "__pycache__" in source.parts or source.suffix == ".pyc":
        return False
    return source.name not in ("INSTALLER", "REQUESTED", "direct_url.json")


def _link_or_copy(source: Path, destination: Path) -> None:
    # Third-party files are hard-linked (~50 MB per community, several communities per run);
    # pip replaces files rather than editing them, so the links never see a change. Copy
    # across file systems.
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)

"""What goes into the zip besides our code: the pinned runtime dependencies, pure Python only."""
from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement

from infra.vendoring import VendoringError, runtime_distributions, vendor_distributions


def test_runtime_closure_is_the_pinned_dependencies_without_chalice_or_dev_tools():
    names = {d.metadata["Name"].lower().replace("_", "-") for d in runtime_distributions()}
    assert {"pynamodb", "boto3", "botocore", "aws-lambda-powertools", "jmespath",
            "typing-extensions"} <= names
    assert {"openpyxl", "et-xmlfile"} <= names  # the roster import reads xlsx in the Lambda (pure Python)
    # Chalice ships its own runtime module in every package; the CLI and dev tools stay out.
    assert not names & {"chalice", "click", "moto", "pytest", "cfn-lint", "requests", "tqdm"}


def test_markers_are_evaluated_for_the_lambda_runtime():
    requirements = [Requirement('jmespath; sys_platform == "win32"'),
                    Requirement('typing-extensions; python_version >= "3.11"')]
    names = [d.metadata["Name"].lower().replace("_", "-") for d in runtime_distributions(requirements)]
    assert names == ["typing-extensions"]


def test_a_version_other_than_the_pin_is_refused():
    with pytest.raises(VendoringError, match="does not satisfy"):
        runtime_distributions([Requirement("pynamodb==0.0.1")])


def test_compiled_extensions_are_refused(tmp_path):
    compiled = next(d for d in (metadata.distribution(n) for n in ("regex", "wrapt", "rpds-py"))
                    if any(str(f).endswith(".so") for f in d.files or ()))
    with pytest.raises(VendoringError, match="compiled extension"):
        vendor_distributions(tmp_path, [compiled])


def test_installed_files_are_vendored_without_caches_or_scripts(tmp_path):
    pins = vendor_distributions(tmp_path, [metadata.distribution("jmespath")])
    assert pins == [f"jmespath=={metadata.version('jmespath')}"]
    assert (tmp_path / "jmespath" / "__init__.py").is_file()
    assert not list(tmp_path.rglob("__pycache__")) and not list(tmp_path.rglob("*.pyc"))
    assert not (tmp_path / "bin").exists() and not list(tmp_path.rglob("jp.py"))

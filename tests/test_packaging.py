"""What the package imports when it loads is what installing it brings."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import netadjust

PACKAGE = Path(netadjust.__file__).parent


def module_level_imports(path: Path) -> set[str]:
    """Top-level names of the module-level import statements (imports inside functions are the
    optional extras, each guarded with its own install hint)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_module_level_import_is_a_core_dependency():
    requirements = importlib.metadata.requires("netadjust")  # as installed from pyproject.toml
    core = [spec for spec in requirements if "extra ==" not in spec]
    declared = {normalised(re.split(r"[<>=!~\[; ]", spec)[0]) for spec in core}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in module_level_imports(path) - set(sys.stdlib_module_names) - {"__future__", "netadjust"}:
            owners = {normalised(d) for d in distributions.get(name, [name])}
            if not owners & declared:
                missing.setdefault(name, []).append(path.relative_to(PACKAGE).as_posix())
    assert not missing, f"imported at module level but not a core dependency: {missing}"


@pytest.mark.parametrize(
    "imports",
    [
        "from netadjust.cost import measure; import netadjust",  # the submodule first
        "import netadjust.cost, netadjust.search; import netadjust",
        "import netadjust; netadjust.cost('resnet20'); import netadjust.cost; import netadjust.search",
    ],
)
def test_the_api_names_are_the_apis_whatever_was_imported_first(imports):
    code = (
        f"{imports}\nfrom netadjust import api\n"
        "assert netadjust.cost is api.cost and netadjust.search is api.search\n"
        "assert netadjust.cost('resnet20', num_classes=100).macs == 40556800\n"
        "from netadjust.cost import measure\nassert callable(measure)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

"""The layering rules of ARCHITECTURE.md, read from the source: which package may import what."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "lstm_pipeline").rglob("*.py"))
TRACKING = ROOT / "lstm_pipeline" / "tracking"
FLOWS = sorted((ROOT / "flows").glob("*.py"))


def imported_packages(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_rules_see_every_module():
    assert len(LIBRARY) > 15 and len(FLOWS) > 5
    assert "mlflow" in imported_packages(TRACKING / "store.py")
    assert "prefect" in imported_packages(ROOT / "flows" / "training.py")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_imports_prefect(path):
    assert not imported_packages(path) & {"prefect", "prefect_dask", "flows"}


@pytest.mark.parametrize("path", LIBRARY + FLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_tracking_package_imports_mlflow(path):
    if TRACKING not in path.parents:
        assert "mlflow" not in imported_packages(path)


def test_the_forecast_path_never_imports_torch():
    assert "torch" not in imported_packages(ROOT / "lstm_pipeline" / "predict.py")

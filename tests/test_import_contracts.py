"""The layers are enforced by import-linter (contracts in pyproject.toml), in the default suite.

Front ends -> application core -> tuning -> rag -> store -> database, and the routing core imports none
of them; the contracts pass on this tree and fail when someone adds an upward import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("router", "tuning", "rag", "tui")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def source_copy(tmp_path: Path) -> Path:
    """The packages' Python files and pyproject.toml in a temporary directory (no model weights)."""
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=lambda d, names: [n for n in names if not n.endswith(".py") and not (Path(d) / n).is_dir()
                                                 or n in ("__pycache__", "artifacts")])
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_a_contract(tmp_path):
    root = source_copy(tmp_path)
    assert lint(root).returncode == 0, "the copy passes before the change"
    engine = root / "router" / "engine.py"
    engine.write_text(engine.read_text() + "\nfrom rag.grounding import build_grounder  # noqa: E402,F401\n")
    session = root / "tui" / "session.py"
    session.write_text(session.read_text() + "\nfrom router import store  # noqa: E402,F401\n")
    result = lint(root)
    assert result.returncode != 0
    assert "router.engine is not allowed to import rag" in result.stdout
    assert "tui is not allowed to import router.store" in result.stdout and "tui.session -> router.store" in result.stdout

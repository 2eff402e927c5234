"""Front-end frameworks stay in the front ends: only router/api/ and tui/ may import fastapi, starlette or textual."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = {"fastapi", "starlette", "textual"}
ALLOWED = (ROOT / "router" / "api", ROOT / "tui")
SKIP_DIRS = {".venv", "venv", ".git", "build", "dist", "node_modules", "__pycache__", ".eggs"}


def imported_frameworks(source: str, filename: str) -> set[str]:
    tree = ast.parse(source, filename)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & FRAMEWORKS
    return found


def python_files():
    for path in ROOT.rglob("*.py"):
        if SKIP_DIRS & set(path.relative_to(ROOT).parts) or any(p.endswith(".egg-info") for p in path.parts):
            continue
        yield path


def test_only_front_ends_import_web_and_terminal_frameworks():
    offenders = []
    for path in python_files():
        if any(path.is_relative_to(allowed) for allowed in ALLOWED):
            continue
        if path.is_relative_to(ROOT / "tests"):
            continue  # tests drive the front ends with their own clients (TestClient, Pilot)
        hits = imported_frameworks(path.read_text(encoding="utf-8"), str(path))
        if hits:
            offenders.append(f"{path.relative_to(ROOT)} imports {', '.join(sorted(hits))}")
    assert offenders == [], "front-end frameworks outside router/api/ and tui/:\n" + "\n".join(offenders)


def test_the_scanner_catches_every_import_form():
    assert imported_frameworks("import fastapi", "x") == {"fastapi"}
    assert imported_frameworks("from starlette.responses import JSONResponse", "x") == {"starlette"}
    assert imported_frameworks("def f():\n    from textual.app import App", "x") == {"textual"}
    assert imported_frameworks("import importlib\nimportlib.import_module('fastapi.routing')", "x") == {"fastapi"}
    assert imported_frameworks("from . import fastapi_helpers\nimport fastapiish", "x") == set()

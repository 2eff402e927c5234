"""Shared pieces of the RAG tests: a small copy of the shipped corpus and settings over a temp store."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from router.settings import Settings

POLICIES = Path(__file__).resolve().parent.parent / "data" / "policies"
SMALL_CORPUS = ("rule-10.md", "rule-11.md", "rule-13.md", "rule-02.md", "dept-warehouse.md")


def small_corpus(directory: Path) -> Path:
    """Five documents of the shipped corpus copied into a directory of the test's own."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in SMALL_CORPUS:
        shutil.copy(POLICIES / name, directory / name)
    return directory


def store_settings(tmp_path: Path, **kwargs) -> Settings:
    return Settings(data_dir=tmp_path / "triage-data", **kwargs)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def venv_script(name: str) -> str:
    """A console script installed beside this interpreter (triage, chroma)."""
    import sys

    return str(Path(sys.executable).parent / name)

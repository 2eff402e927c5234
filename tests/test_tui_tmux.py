"""The console for real: `triage console` in tmux on a tiny saved model, driven with send-keys, read with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import Session, select

from router.db import make_engine, upgrade
from router.db.models import Ticket
from router.modelio import load_base_model
from router.security import create_key
from router.settings import Settings
from tests.conftest import tune_tiny

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")

TRIAGE = Path(sys.executable).parent / "triage"


class Tmux:
    """One private tmux server (its own socket) running one session."""

    def __init__(self, socket: str):
        self.base = ["tmux", "-L", socket]

    def run(self, *args: str) -> str:
        return subprocess.run(self.base + list(args), check=True, capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "console")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.run("send-keys", "-t", "console", *(["-l"] if literal else []), *keys)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared on screen; last screen:\n{self.screen()}")

    def alive(self) -> bool:
        return subprocess.run(self.base + ["has-session", "-t", "console"], capture_output=True).returncode == 0

    def kill(self) -> None:
        subprocess.run(self.base + ["kill-server"], capture_output=True)


@pytest.fixture
def console_env(tmp_path, tiny_base, tiny_train_file):
    """A tiny model saved with save_pretrained and a soft prompt tuned on it; a data directory nothing has used."""
    model_dir = tmp_path / "tiny-model"
    tiny_base.model.save_pretrained(model_dir)
    tiny_base.tokenizer.save_pretrained(model_dir)
    data_dir = tmp_path / "console-data"
    settings = Settings(data_dir=data_dir, base_model=str(model_dir), shots_file=tiny_train_file)
    artifact, _ = tune_tiny(load_base_model(settings), tiny_train_file, tmp_path / "tiny-console-prompt")
    env = {"TRIAGE_DATA_DIR": str(data_dir), "TRIAGE_BASE_MODEL": str(model_dir), "TRIAGE_TUNED_MODEL": str(artifact),
           "TRIAGE_SHOTS_FILE": str(tiny_train_file), "TRIAGE_TORCH_THREADS": "1", "HOME": os.environ["HOME"],
           "TERM": "xterm-256color", "PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "1"}
    return env, settings


@pytest.fixture
def installed(console_env):
    """The console's environment with a migrated database and a supervisor key."""
    env, settings = console_env
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine)
    with Session(engine) as s:
        key = create_key(s, "boss", "supervisor")[1]
    return env, engine, key


def start_console(tmux: Tmux, env: dict) -> None:
    command = " ".join([*(f"{k}={v!s}" for k, v in env.items()), str(TRIAGE), "console"])
    tmux.run("new-session", "-d", "-s", "console", "-x", "100", "-y", "30", f"env -i {command}")


def quit_console(tmux: Tmux) -> None:
    tmux.keys("C-q")
    deadline = time.monotonic() + 20
    while tmux.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tmux.alive(), "Ctrl+Q quits the console"


def test_console_in_tmux_routes_and_saves(installed, tmp_path):
    env, engine, key = installed
    tmux = Tmux(f"triage-test-{os.getpid()}")
    try:
        start_console(tmux, env)
        tmux.wait_for("Enter routes the complaint")
        tmux.keys("Only 3 of the 4 chairs came in the delivery.", literal=True)
        tmux.keys("Enter")
        shown = tmux.wait_for("saved #1")
        assert "Ticket 1" in shown and "tuned" in shown and "zero-shot" in shown
        tmux.wait_for("multi-shot")
        tmux.keys("a")
        tmux.wait_for("accepted")
        # the supervisor view asks for a key; a wrong one is refused, the right one opens it
        tmux.keys("F3")
        tmux.wait_for("Supervisor key")
        tmux.keys("trk_wrong_key", literal=True)
        tmux.keys("Enter")
        tmux.wait_for("Not a valid supervisor key")
        tmux.keys(key, literal=True)
        tmux.keys("Enter")
        shown = tmux.wait_for("Training data")
        assert "Review" in shown and "Models" in shown
        quit_console(tmux)
    finally:
        tmux.kill()
    with Session(engine) as s:
        (ticket,) = s.exec(select(Ticket)).all()
        assert ticket.text == "Only 3 of the 4 chairs came in the delivery." and ticket.source == "console"
        assert ticket.needs_review is False, "accepting takes the ticket out of the review queue"


def test_console_starts_on_a_brand_new_data_dir_and_saves(console_env):
    env, settings = console_env
    assert not (settings.data_dir / "triage.db").exists()
    tmux = Tmux(f"triage-first-{os.getpid()}")
    try:
        start_console(tmux, env)
        tmux.wait_for("Enter routes the complaint", timeout=180)  # creating the database adds to the start
        tmux.keys("The agent was rude and hung up on me.", literal=True)
        tmux.keys("Enter")
        tmux.wait_for("saved #1", timeout=120)
        quit_console(tmux)
    finally:
        tmux.kill()
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as s:
        (ticket,) = s.exec(select(Ticket)).all()
    assert ticket.text == "The agent was rude and hung up on me." and ticket.source == "console"
    engine.dispose()

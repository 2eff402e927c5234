"""The worker process: started as `python -m tuning.jobs.run JOB_ID`, in its own session so that
a closed terminal or Ctrl-C in `triage retrain start --follow` never stop it; how to tell whether a recorded
process is still alive (a pid plus its start time, so a reused pid is not mistaken); and the owner a
worker watches: a server that starts a job owns it, and when that server is gone the job stops."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tuning.jobs.paths import JobPaths, write_settings

OWNER_POLL_S = 2.0  # how often a worker checks that the server that started it is still there


def hostname() -> str:
    return socket.gethostname()[:255]


def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot), or None where /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_alive(pid: int, started: str | None = None) -> bool:
    """Whether the process is still running (a zombie or a new process under the same pid is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc: the signal check is all there is
    if fields[0] in ("Z", "X"):
        return False
    return started is None or fields[19] == started


def spawn(settings, job_id: int, owner_pid: int | None = None) -> subprocess.Popen:
    """Start the worker for `job_id`; its output goes to the job's worker.log.

    owner_pid: the process the job belongs to (a server); the worker stops the job when it is gone.
    None: a detached job, which runs to its end whoever started it.
    """
    paths = JobPaths.of(settings, job_id)
    write_settings(settings, paths.settings)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "ANONYMIZED_TELEMETRY": "False"}
    owner = [] if owner_pid is None else ["--owner", f"{owner_pid}:{process_start(owner_pid) or ''}"]
    with paths.log.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tuning.jobs.run", str(job_id), "--settings", str(paths.settings), *owner],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )


def watch_owner(owner: str, on_gone: Callable[[int], None], every: float = OWNER_POLL_S) -> threading.Thread:
    """In a daemon thread, call on_gone(pid) once the owner ("PID:START" from spawn) has ended."""
    pid_text, _, started = owner.partition(":")
    pid = int(pid_text)

    def watch_it() -> None:
        while pid_alive(pid, started or None):
            time.sleep(every)
        on_gone(pid)

    thread = threading.Thread(target=watch_it, name=f"owner-{pid}", daemon=True)
    thread.start()
    return thread


def watch(process: subprocess.Popen, on_exit: Callable[[int], None]) -> threading.Thread:
    """Reap the worker when it ends (no zombie) and call on_exit(returncode) in a daemon thread."""

    def wait() -> None:
        on_exit(process.wait())

    thread = threading.Thread(target=wait, name=f"tuning-job-{process.pid}", daemon=True)
    thread.start()
    return thread

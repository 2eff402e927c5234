"""Shared pieces of the replica tests: `triage serve` replicas on one data directory, one PostgreSQL database and
one Chroma server; requests fired at several replicas at the same moment. Every process started here runs in its
own process group and is stopped by its owner's finalizer."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import MetaData

from rag_helpers import venv_script
from router.db import make_engine, upgrade
from scripts.loadbench import free_port, start_server, stop_server, wait_ready

PG_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL")
NO_POSTGRES = ("the replica tests need a PostgreSQL server shared by the replicas: run them through "
               "scripts/with_postgres.sh (make test does) or set TRIAGE_TEST_POSTGRES_URL to a throwaway database")


def fresh_postgres(url: str):
    """The throwaway database emptied and migrated (as `triage db upgrade` does); returns its engine."""
    engine = make_engine(url)
    reflected = MetaData()
    reflected.reflect(engine)
    reflected.drop_all(engine)
    upgrade(engine)
    return engine


def replica_env(tmp: Path, settings: dict[str, str]) -> dict[str, str]:
    """This environment without the caller's TRIAGE_* settings, plus `settings` (PYTHONPATH is kept)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    (tmp / "home").mkdir(parents=True, exist_ok=True)
    return {**env, "HOME": str(tmp / "home"), "TRIAGE_TORCH_THREADS": "1", **settings}


class ChromaServer:
    """`chroma run` on a free loopback port, storing under `path`."""

    def __init__(self, path: Path):
        self.port = free_port()
        self.log = path.with_suffix(".log")
        self.proc = subprocess.Popen([venv_script("chroma"), "run", "--path", str(path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Chroma server did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_server(self.proc)


@dataclass
class Replica:
    """One `triage serve` on its own loopback port."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> "Replica":
        self.starts += 1
        self.proc = start_server(self.env, self.port, log_path=self.log)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 of the replica's whole process group: no shutdown, no flush."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_server(self.proc)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Cluster:
    """Replicas over the same data directory, database and Chroma server; `keys` by role."""

    def __init__(self, replicas: list[Replica], keys: dict[str, str], engine):
        self.replicas, self.keys, self.engine = replicas, keys, engine

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def ensure_up(self) -> None:
        """Restart any replica a test stopped, then wait until every one is ready."""
        for replica in self.replicas:
            if not replica.running():
                replica.start()
        for replica in self.replicas:
            try:
                wait_ready(replica.url, self.keys["supervisor"], replica.proc, timeout=300)
            except RuntimeError as exc:
                raise RuntimeError(f"{replica.name}: {exc}\n{replica.tail()}") from None

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


def all_at_once(calls: list[tuple[str, str, dict, dict]], timeout: float = 120) -> list[httpx.Response | Exception]:
    """Send every (method, url, json, headers) call at the same moment, one thread each; answers in order."""
    gate = threading.Barrier(len(calls))

    def send(call):
        method, url, body, headers = call
        with httpx.Client(timeout=timeout) as client:
            request = client.build_request(method, url, json=body, headers=headers)
            gate.wait()
            try:
                return client.send(request)
            except httpx.HTTPError as exc:
                return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(send, calls))

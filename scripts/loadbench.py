"""Load benchmark of ticket intake: N concurrent clients, retries included, against a real server.

    python scripts/loadbench.py --clients 16 --requests 500            # spawns `triage serve` on a temp DB
    python scripts/loadbench.py --url http://127.0.0.1:8080 --key trk_...   # an already running server

Prints throughput and latency percentiles; the slow tests reuse `start_server` and `run_load`.
Traffic goes only to the URL given (default: a server it starts on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FALLBACK_TEXTS = [
    "Where are the 2 extra sets of sheets that are supposed to come with my order?",
    "I see a 2-door model in your TV ad, but why is that not available?",
    "I could not get someone on the phone who could fix my problems!",
    "The blender stopped working after two days.",
    "The box was crushed and the lamp inside is dented.",
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sample_texts(limit: int = 200) -> list[str]:
    from router.settings import project_root

    path = project_root() / "data" / "dev.jsonl"
    if not path.is_file():
        return FALLBACK_TEXTS
    texts = [json.loads(line)["input"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit] or FALLBACK_TEXTS


def start_server(env: dict[str, str], port: int, *, workers: int = 1, log_path: Path | None = None) -> subprocess.Popen:
    """`triage serve` in its own process group on 127.0.0.1:port (stop it with stop_server)."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    cmd = [sys.executable, "-c", "from router.cli import main; main()", "serve", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_server(proc: subprocess.Popen, *, kill: bool = False, timeout: float = 30) -> None:
    """SIGTERM (or SIGKILL) the server's whole process group, i.e. its workers too."""
    if proc.poll() is None or kill:
        try:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def wait_ready(base_url: str, key: str, proc: subprocess.Popen | None = None, timeout: float = 180) -> float:
    """Seconds until /readyz says ready; RuntimeError if the server died or never got ready."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before it was ready")
        try:
            r = httpx.get(f"{base_url}/readyz", headers={"Authorization": f"Bearer {key}"}, timeout=5)
            if r.status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{base_url} was not ready after {timeout:.0f}s")


@dataclass
class LoadReport:
    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # no answer at all (connection errors, timeouts)
    latencies_ms: list[float] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)  # external_id -> ticket id of every 201
    retry_mismatches: list[str] = field(default_factory=list)  # a retry answered with another ticket
    wall_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def percentile(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q / 100 * (len(data) - 1))))]

    def summary(self) -> dict:
        answered = sum(self.statuses.values())
        return {
            "requests": self.sent, "answered": answered, "failures": len(self.failures),
            "statuses": dict(sorted(self.statuses.items())), "tickets": len(self.acked),
            "retry_mismatches": len(self.retry_mismatches), "seconds": round(self.wall_seconds, 2),
            "requests_per_s": round(answered / self.wall_seconds, 1) if self.wall_seconds else 0.0,
            "p50_ms": round(self.percentile(50), 1), "p90_ms": round(self.percentile(90), 1),
            "p99_ms": round(self.percentile(99), 1),
        }


def run_load(base_url: str, key: str, *, clients: int = 16, requests: int = 500, retry_fraction: float = 0.2,
             seed: int = 0, stop: threading.Event | None = None, timeout: float = 120,
             strategy: str | None = None) -> LoadReport:
    """`requests` intake calls from `clients` threads; a `retry_fraction` of them are sent twice
    (half with the same Idempotency-Key, half relying on the external_id alone)."""
    run = uuid.uuid4().hex[:8]
    rng = random.Random(seed)
    texts = sample_texts()
    jobs = []
    for i in range(requests):
        body = {"text": f"{rng.choice(texts)} (order {run}-{i})", "external_id": f"load-{run}-{i}", "source": "load"}
        if strategy:
            body["strategy"] = strategy
        retry = rng.random() < retry_fraction
        jobs.append((body, f"idem-{run}-{i}", retry, rng.random() < 0.5))
    report = LoadReport()
    cursor = iter(range(len(jobs)))
    cursor_lock = threading.Lock()
    auth = {"Authorization": f"Bearer {key}"}

    def send(client: httpx.Client, body: dict, idem: str | None) -> None:
        headers = {**auth, **({"Idempotency-Key": idem} if idem else {})}
        started = time.perf_counter()
        try:
            r = client.post(f"{base_url}/v1/tickets", json=body, headers=headers)
        except httpx.HTTPError as exc:
            with report.lock:
                report.sent += 1
                report.failures.append(f"{body['external_id']}: {exc.__class__.__name__}: {exc}")
            return
        elapsed = (time.perf_counter() - started) * 1000
        with report.lock:
            report.sent += 1
            report.statuses[r.status_code] += 1
            report.latencies_ms.append(elapsed)
            if r.status_code == 201:
                ticket = r.json()["id"]
                known = report.acked.setdefault(body["external_id"], ticket)
                if known != ticket:
                    report.retry_mismatches.append(f"{body['external_id']}: {known} then {ticket}")

    def worker() -> None:
        with httpx.Client(timeout=timeout) as client:
            while stop is None or not stop.is_set():
                with cursor_lock:
                    index = next(cursor, None)
                if index is None:
                    return
                body, idem, retry, with_key = jobs[index]
                send(client, body, idem)
                if retry and (stop is None or not stop.is_set()):
                    send(client, body, idem if with_key else None)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.wall_seconds = time.perf_counter() - started
    return report


def _spawned_server(args) -> tuple[subprocess.Popen, str, str, Path]:
    """A server on a fresh temp database with a new integration key (uses the environment's model settings)."""
    data_dir = Path(tempfile.mkdtemp(prefix="triage-loadbench-"))
    env = {**os.environ, "TRIAGE_DATA_DIR": str(data_dir), "TRIAGE_MODEL_POLL_SECONDS": "0"}
    if args.cache_from:
        (args.cache_from / "cache").mkdir(parents=True, exist_ok=True)
        (data_dir / "cache").symlink_to((args.cache_from / "cache").resolve())
    if args.workers:
        env["TRIAGE_WORKERS"] = str(args.workers)
    prefix = [sys.executable, "-c", "from router.cli import main; main()"]
    subprocess.run(prefix + ["db", "upgrade"], env=env, check=True, capture_output=True)
    made = subprocess.run(prefix + ["keys", "create", "--role", "integration", "--name", "loadbench"], env=env,
                          check=True, capture_output=True, text=True)
    port = free_port()
    proc = start_server(env, port, workers=args.workers or 1, log_path=data_dir / "server.log")
    return proc, f"http://127.0.0.1:{port}", made.stdout.strip(), data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="A running server (default: spawn one on 127.0.0.1 with a temp database).")
    parser.add_argument("--key", help="Integration or supervisor key for --url.")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--retry-fraction", type=float, default=0.2)
    parser.add_argument("--workers", type=int, default=0, help="Server workers when spawning (default TRIAGE_WORKERS).")
    parser.add_argument("--strategy", choices=["tuned", "zero-shot", "multi-shot"], help="Default: the server's.")
    parser.add_argument("--cache-from", type=Path, help="Reuse this data dir's model cache when spawning (skips the "
                        "first-start GGUF conversion).")
    args = parser.parse_args(argv)
    proc = None
    if args.url:
        if not args.key:
            parser.error("--key is required with --url")
        base_url, key = args.url.rstrip("/"), args.key
    else:
        proc, base_url, key, data_dir = _spawned_server(args)
        print(f"server log: {data_dir / 'server.log'}", file=sys.stderr)
    try:
        ready = wait_ready(base_url, key, proc)
        print(f"ready after {ready:.1f}s; {args.clients} clients, {args.requests} tickets", file=sys.stderr)
        report = run_load(base_url, key, clients=args.clients, requests=args.requests,
                          retry_fraction=args.retry_fraction, strategy=args.strategy)
    finally:
        if proc is not None:
            stop_server(proc)
    print(json.dumps(report.summary(), indent=1))
    bad = report.failures or any(s >= 500 for s in report.statuses) or report.retry_mismatches
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

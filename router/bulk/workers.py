"""Routing a backlog's chunks in N worker processes (`triage route --input F --workers N`).

Each worker is a fresh process (spawned, not forked: no torch thread pools or model copied from the parent)
that loads the model once with `cores // N` torch threads, then routes whole chunks, exactly the chunks a
single process would route, through the same `route_many`, and sends back their output text. The parent
alone writes, in input order: a chunk routed early waits until every chunk before it is written, so the
output file, and resuming it, are the same as with one process. At most two chunks per worker are in
flight; an interruption loses only those, and the next run routes them again.

For machines with more cores than one routing process uses well: on 2 cores, 2 workers of 1 thread each
are not faster than 1 process of 2 threads (see the README's measurement).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

from router.bulk.records import BulkError, Record

MAX_WORKERS = 64
IN_FLIGHT_PER_WORKER = 2
POLL_SECONDS = 1.0  # how often a waiting parent checks its workers are alive, and a worker its parent


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, available: int | None = None) -> int:
    """torch threads for each of `workers` processes, so that together they use about every core."""
    return max(1, (available or cores()) // workers)


def check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise BulkError(f"--workers must be a whole number from 1 to {MAX_WORKERS}, not {workers!r}")
    return workers


def _serve(settings, tuned_path: Path, options: dict, tasks, results, parent: int) -> None:
    """A worker process: load the model, then route chunks until told to stop (or the parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    try:
        from router.bulk.run import output_line
        from router.service import RouterService

        service = RouterService(settings, tuned_path=tuned_path)
        service.engine  # noqa: B018 - loads the base model
        if (options["strategy"] or settings.default_strategy) == "tuned":
            service.tuned_model  # noqa: B018 - loads the tuned artifact
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops the run
        results.put(("error", None, f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", None, None))
    while True:
        try:
            task = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if os.getppid() != parent:  # the parent was killed: nobody will write what is routed
                results.cancel_join_thread()  # exit now, not once a reader takes what is still queued
                return
            continue
        if task is None:
            return
        index, records = task
        try:
            routings = service.route_many([r.text for r in records], options["strategy"], shots=options["shots"],
                                          batch_size=options["batch_size"])
            results.put(("done", index, "".join(output_line(r, x) for r, x in zip(records, routings))))
        except Exception as exc:  # noqa: BLE001
            results.put(("error", index, f"{type(exc).__name__}: {exc}"))
            return


class WorkerPool:
    """N routing processes; `route(blocks)` yields each block's output text in block order."""

    def __init__(self, settings, tuned_path: Path, workers: int, *, strategy: str | None = None,
                 shots: int | None = None, batch_size: int | None = None):
        self.workers = check_workers(workers)
        threads = settings.torch_threads or threads_per_worker(workers)  # an explicit TRIAGE_TORCH_THREADS wins
        self.threads = threads
        context = multiprocessing.get_context("spawn")
        self.tasks, self.results = context.Queue(), context.Queue()
        options = {"strategy": strategy, "shots": shots, "batch_size": batch_size}
        worker_settings = settings.model_copy(update={"torch_threads": threads})
        self.processes = [
            context.Process(target=_serve, name=f"triage-route-{n + 1}", daemon=True,
                            args=(worker_settings, tuned_path, options, self.tasks, self.results, os.getpid()))
            for n in range(workers)
        ]

    def __enter__(self) -> "WorkerPool":
        for process in self.processes:
            process.start()
        ready = 0
        while ready < self.workers:  # every model loaded before the caller starts its clock
            kind, _, message = self._next()
            if kind != "ready":
                raise BulkError(f"a routing worker could not start: {message}")
            ready += 1
        return self

    def __exit__(self, *exc) -> None:
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=5 if exc[0] is None else 0.5)
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)

    def _next(self):
        while True:
            try:
                return self.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                dead = [p for p in self.processes if p.exitcode not in (None, 0)]
                if dead:
                    raise BulkError(f"routing worker {dead[0].name} died (exit code {dead[0].exitcode}); "
                                    "run the same command again to continue where the output stops") from None

    def route(self, blocks: Iterable[list[Record]]) -> Iterator[str]:
        """Output text of each block (its routable records), in order; an empty block gives ''."""
        blocks = list(blocks)
        done: dict[int, str] = {}
        sent = 0
        for index in range(len(blocks)):
            while sent < len(blocks) and sent - index < IN_FLIGHT_PER_WORKER * self.workers:
                if blocks[sent]:
                    self.tasks.put((sent, blocks[sent]))
                else:
                    done[sent] = ""
                sent += 1
            while index not in done:
                kind, at, text = self._next()
                if kind != "done":
                    where = f" on the chunk starting at input line {blocks[at][0].line}" if at is not None else ""
                    raise BulkError(f"a routing worker failed{where}: {text}")
                done[at] = text
            yield done.pop(index)

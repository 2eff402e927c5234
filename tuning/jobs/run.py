"""`python -m tuning.jobs.run JOB_ID --settings FILE`: the worker process of one tuning job.

Exit status 0 when the job succeeded, 1 when it failed or was cancelled (the
reason is in the database and the job's worker.log). SIGTERM stops it like a cancel; with --owner,
so does the end of that process (the job then fails, saying so).
Unless TRIAGE_TORCH_THREADS says otherwise it uses every core but one (serving keeps one).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from tuning.jobs.paths import JobPaths, read_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuning.jobs.run", description=__doc__.splitlines()[0])
    parser.add_argument("job_id", type=int)
    parser.add_argument("--settings", required=True, help="settings.json written by the launcher")
    parser.add_argument("--owner", default=None, metavar="PID:START",
                        help="the process the job belongs to: when it ends, the job stops at its next step and fails")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = read_settings(args.settings)
    if not settings.torch_threads:  # leave a core to the server that keeps routing meanwhile
        settings = settings.model_copy(update={"torch_threads": max(1, (os.cpu_count() or 2) - 1)})
    paths = JobPaths.of(settings, args.job_id)

    def terminate(_signum, _frame) -> None:  # stop at the next step, like a cancel
        paths.cancel.touch()

    signal.signal(signal.SIGTERM, terminate)
    if args.owner:
        from tuning.jobs.launch import watch_owner

        def owner_gone(pid: int) -> None:
            paths.orphaned.write_text(f"the server that started it (pid {pid}) stopped", encoding="utf-8")
            paths.cancel.touch()

        watch_owner(args.owner, owner_gone)
    from router.store import Conflict
    from tuning.jobs.worker import run_job

    try:
        job = run_job(settings, args.job_id)
    except Conflict as exc:  # another worker runs it (claimed under a database lock): this one changes nothing
        logging.getLogger(__name__).error("tuning job %s not run by this worker: %s", args.job_id, exc)
        return 1
    logging.getLogger(__name__).info("tuning job %s %s%s", job.id, job.state, f": {job.error}" if job.error else "")
    return 0 if job.state == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())

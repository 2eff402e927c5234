"""Memory over repeated promote/rollback in one serving process (prints numbers, asserts nothing).

    python scripts/promote_memory.py [ARTIFACT_DIR] [--times 20] [--data data/dev.jsonl] [--n 16]

Registers two versions of ARTIFACT_DIR (default: the shipped tuned model) in a throwaway SQLite database,
then promotes one and rolls it back, `--times` changes in all, through the application core as the API's
promote/rollback routes do, routing `--n` complaints with the served model after each; prints the resident
memory after every change and the 20th's difference from the 2nd (issue target: within 50 MB).
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
from pathlib import Path

from router.application import Application
from router.dataset import load_examples
from router.settings import DEFAULT_TUNED, Settings
from tuning.artifacts import update_metadata
from tuning.bench import current_rss_mb


def versions(artifact: Path, root: Path) -> list[Path]:
    out = []
    for name in ("memory-a", "memory-b"):
        path = root / "models" / name
        shutil.copytree(artifact, path)
        update_metadata(path, version=name)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", default=str(DEFAULT_TUNED))
    parser.add_argument("--times", type=int, default=20)
    parser.add_argument("--data", default="data/dev.jsonl")
    parser.add_argument("--n", type=int, default=16)
    args = parser.parse_args()
    texts = [ex.input for ex in load_examples(args.data)[: args.n]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        core = Application(Settings(data_dir=root / "data", model_poll_seconds=0))
        first, second = versions(Path(args.artifact), root)
        for path in (first, second):
            core.registry.register(path)
        core.load()
        rss = []
        for change in range(1, args.times + 1):
            if change == 1 or change % 2 == 0:  # a, then b, b back to a, b, ...
                row = core.registry.promote("memory-a" if change == 1 else "memory-b", who="memory")
            else:
                row = core.registry.rollback("memory-b", who="memory")
            routed = core.route_many(texts, "tuned")
            assert {r.model_version for r in routed} == {row.version}
            gc.collect()
            rss.append(current_rss_mb())
            what = "promote " if change == 1 or change % 2 == 0 else "rollback"
            print(f"change {change:>2}: {what} -> {row.version:<9} "
                  f"{rss[-1]:8.1f} MB", flush=True)
        core.close()
    if len(rss) >= 2:
        print(f"after change {len(rss)} vs after change 2: {rss[-1] - rss[1]:+.1f} MB")


if __name__ == "__main__":
    main()

"""How much memory each additional tuned model costs on one base model (prints numbers, asserts nothing).

    python scripts/prompts_memory.py DIR_OR_VERSION [DIR_OR_VERSION ...] [--data data/dev.jsonl] [--n 64]

Loads the base model, routes --n complaints with each tuned model in turn (each stays loaded, as a
server keeps the versions its requests name), then all of them mixed in shared batches; prints the
process's resident memory after each step and what each model added.
"""

from __future__ import annotations

import argparse
import gc
import time

from router.dataset import load_examples
from router.service import RouterService
from router.settings import Settings
from tuning.bench import current_rss_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data", default="data/dev.jsonl")
    parser.add_argument("--n", type=int, default=64)
    args = parser.parse_args()
    texts = [ex.input for ex in load_examples(args.data)[: args.n]]
    service = RouterService(Settings())
    service.route_many(texts[:16], "zero-shot")  # base model loaded and warm, kernels cached
    gc.collect()
    previous = baseline = current_rss_mb()
    print(f"base model loaded and warm: {baseline:.1f} MB")
    for ref in args.models:
        started = time.perf_counter()
        tuned = service.tuned_for(ref)
        routed = service.route_many(texts, "tuned", model=ref)
        gc.collect()
        now = current_rss_mb()
        print(f"+ {tuned.version:<36} {tuned.method:<12} {now:8.1f} MB  (+{now - previous:6.1f} MB; "
              f"{len(routed)} routed in {time.perf_counter() - started:.1f} s)")
        previous = now
    mixed = service.route_mixed(texts, [args.models[i % len(args.models)] for i in range(len(texts))])
    gc.collect()
    now = current_rss_mb()
    print(f"all {len(args.models)} mixed in shared batches: {len(mixed)} routed, {now:.1f} MB (+{now - previous:.1f} MB)")
    print(f"total over the base model: +{now - baseline:.1f} MB")


if __name__ == "__main__":
    main()

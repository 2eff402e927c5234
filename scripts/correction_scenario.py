"""Corrections act at once: route the new-rule complaints and a held-out file before and after saving the
supervisors' corrections as precedents, with no retrain in between (data/scenario/RULE.md says what changed).

    python scripts/correction_scenario.py --model router/artifacts/smollm2-complaints-corrections
    python scripts/correction_scenario.py --model DIR --held-out data/dev.jsonl --json
    python scripts/correction_scenario.py --model DIR --record    # also into DIR's triage.json and model card

Builds a scratch retrieval store (policy corpus + the training file's precedents) in a temporary directory,
so the configured store is never changed. The model should be one tuned with precedents and simulated
corrections (`triage tune --context precedents --simulate-corrections 0.3`, `make tune-corrections`);
`--precedents` serves a model tuned without context with precedents too (with a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def affected_lines(rule_file: Path, held_out: Path) -> list[int]:
    """Held-out lines the rule change relabels, listed in RULE.md as `<file name>: line N, line M`."""
    for line in rule_file.read_text().splitlines():
        if line.startswith(f"- `{held_out.name}`:"):
            return [int(word) for word in line.replace(",", " ").split() if word.isdigit()]
    return []


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def reproduce(args) -> str:
    """The command that gives the same result, with every argument that differs from the default."""
    from rag.scenario import SCENARIO_DIR

    words = ["python scripts/correction_scenario.py --model <this directory>"]
    if args.held_out.resolve() != (ROOT / "data" / "dev.jsonl").resolve():
        words.append(f"--held-out {_shown(args.held_out)}")
    if args.train is not None:
        words.append(f"--train {_shown(args.train)}")
    if args.scenario.resolve() != SCENARIO_DIR.resolve():
        words.append(f"--scenario {_shown(args.scenario)}")
    if args.precedents:
        words.append("--precedents")
    return " ".join(words)


def main(argv=None) -> int:
    from rag.scenario import SCENARIO_DIR, format_scenario, run_scenario
    from router.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="tuned artifact directory")
    parser.add_argument("--held-out", type=Path, default=ROOT / "data" / "dev.jsonl")
    parser.add_argument("--train", type=Path, default=None, help="precedents of the scratch store (default: the shots file)")
    parser.add_argument("--scenario", type=Path, default=SCENARIO_DIR)
    parser.add_argument("--precedents", action="store_true",
                        help="retrieve precedents even if the model was not tuned with them (it is warned about)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--record", action="store_true",
                        help="store the result in the model's triage.json (scenario_metrics) and its model card")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    affected = affected_lines(args.scenario / "RULE.md", args.held_out)
    result = run_scenario(Settings(), args.model, held_out_path=args.held_out, train_path=args.train,
                          scenario_dir=args.scenario, affected=affected, precedents=args.precedents,
                          say=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result.to_json(), indent=1) if args.json else format_scenario(result, args.held_out.name))
    if args.record:
        from tuning.artifacts import update_metadata

        update_metadata(args.model, scenario_metrics={**result.to_json(), "command": reproduce(args)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

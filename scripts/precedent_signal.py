"""How much a labeled file's nearest precedents could tell a model: the ceiling retrieval puts on RAG with precedents.

    python scripts/precedent_signal.py --data data/dev.jsonl
    python scripts/precedent_signal.py --data data/dev.jsonl --routed routed-dev.jsonl   # a model's routings beside

Precedents come from the training files (default data/complaints.jsonl) through the same MiniLM embeddings and
leave-out index a context tune uses (rag.training_context.LeaveOutPrecedents), never from the file judged. For k
precedents it prints how often their majority vote (a department named by more than half of them) is the labeled
set, and how often the labeled set is one of the k. With --routed (the JSONL `triage route --input F --output R`
writes), it also counts, on the complaints the model routed wrong, how many the vote gets right (what following the
precedents could fix) and how many have the labeled set among the k, and, on those it routed right, how many the vote
gets wrong (what following them would break).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def vote(found: list[frozenset[str]]) -> frozenset[str]:
    """The departments named by more than half of the precedents."""
    counts = Counter(d for departments in found for d in departments)
    return frozenset(d for d, n in counts.items() if n > len(found) / 2)


def routed_sets(path: Path, n: int) -> list[frozenset[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if len(rows) != n:
        raise SystemExit(f"{path}: {len(rows)} routings for {n} complaints (route the same file with --input)")
    return [frozenset(row["departments"]) for row in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="labeled file to judge (JSONL)")
    parser.add_argument("--train", type=Path, action="append", help="precedent pool (repeatable; default "
                        "data/complaints.jsonl)")
    parser.add_argument("--k", type=int, action="append", help="precedents per complaint (repeatable; default 1 3 5 10)")
    parser.add_argument("--routed", type=Path, help="a model's routings of --data, to count what the vote fixes/breaks")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from rag.training_context import LeaveOutPrecedents
    from router.dataset import load_examples
    from router.departments import parse_departments

    pool = [ex for path in args.train or [ROOT / "data/complaints.jsonl"] for ex in load_examples(path)]
    judged = load_examples(args.data)
    ks = sorted(set(args.k or [1, 3, 5, 10]))
    index = LeaveOutPrecedents(pool)
    try:
        found = index.search_many([ex.input for ex in judged], max(ks))
    finally:
        index.close()
    labels = [[frozenset(parse_departments(p.title)) for p in row] for row in found]
    gold = [frozenset(ex.departments) for ex in judged]
    routed = routed_sets(args.routed, len(judged)) if args.routed else None
    wrong = {i for i, r in enumerate(routed) if r != gold[i]} if routed else set()
    rows = []
    for k in ks:
        votes = [vote(near[:k]) for near in labels]
        row = {"k": k, "vote_exact": sum(v == g for v, g in zip(votes, gold)) / len(gold),
               "gold_among_k": sum(g in near[:k] for near, g in zip(labels, gold)) / len(gold)}
        if routed:
            row |= {"model_wrong": len(wrong), "vote_right_where_model_wrong": sum(votes[i] == gold[i] for i in wrong),
                    "among_k_where_model_wrong": sum(gold[i] in labels[i][:k] for i in wrong),
                    "vote_wrong_where_model_right": sum(votes[i] != gold[i] for i in range(len(gold)) if i not in wrong)}
        rows.append(row)
    if args.json:
        print(json.dumps({"data": str(args.data), "pool": len(pool), "n": len(judged), "rows": rows}))
        return 0
    print(f"{args.data}: {len(judged)} complaints, precedents from {len(pool)} labeled ones")
    extra = "  model wrong  vote right there  among k there  vote wrong where model right" if routed else ""
    print(f"{'k':>3}  {'vote exact-set':>14}  {'labeled set among k':>19}{extra}")
    for row in rows:
        line = f"{row['k']:>3}  {row['vote_exact']:>14.3f}  {row['gold_among_k']:>19.3f}"
        if routed:
            line += (f"  {row['model_wrong']:>11}  {row['vote_right_where_model_wrong']:>16}"
                     f"  {row['among_k_where_model_wrong']:>13}"
                     f"  {row['vote_wrong_where_model_right']:>29}")
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

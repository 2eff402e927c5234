"""The two writer halves of data/complaints_more2.jsonl (its eight writers' complaints lie in blocks of 250 lines).

    python scripts/more2_halves.py [--out DIR]

Blocks 0, 2, 4, 6 (gaming, health and mobility, stationery, coffee and food appliances: 1000 complaints) are the
training half, kept as data/complaints_more2_train.jsonl; blocks 1, 3, 5, 7 (home improvement, energy, bedding and
patio, jewelry: 996) are the held-out half that late prompts trained on the first are selected on. Writes the
held-out half to DIR/complaints_more2_select.jsonl and checks the committed training half line for line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = 250


def halves(lines: list[str]) -> tuple[list[str], list[str]]:
    """(training half, held-out half): alternate blocks of BLOCK lines, the first block training."""
    train = [line for i, line in enumerate(lines) if (i // BLOCK) % 2 == 0]
    held_out = [line for i, line in enumerate(lines) if (i // BLOCK) % 2 == 1]
    return train, held_out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("."), help="where complaints_more2_select.jsonl goes")
    args = parser.parse_args()
    lines = (ROOT / "data" / "complaints_more2.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    train, held_out = halves(lines)
    committed = (ROOT / "data" / "complaints_more2_train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    if committed != train:
        print("data/complaints_more2_train.jsonl is not the training half of data/complaints_more2.jsonl", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "complaints_more2_select.jsonl"
    target.write_text("".join(held_out), encoding="utf-8")
    print(f"training half: {len(train)} complaints (data/complaints_more2_train.jsonl, checked); "
          f"held-out half: {len(held_out)} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

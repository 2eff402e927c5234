"""Time a late prompt's real training steps with transformers' layers and with `tuning.fast_layers`, alternating.

    .venv/bin/python scripts/late_prompt_real_steps.py [--examples 600] [--batches 12] [--rounds 3] [--layer 4]

Builds the training objective `triage tune --method late-prompt` builds (the embedded model, bf16, the frozen layers
below --layer run once over the first --examples complaints of data/complaints.jsonl), then times the same --batches
batches of 16 (shuffled, of similar length, as an epoch draws them; split into one shard per core) through the
objective's backward, once with transformers' layers (plain attention) and once with the plain-arithmetic layers,
alternating for --rounds rounds. Prints the two implementations' loss on the first batch (bf16: equal up to
rounding), seconds per step and the median ratio; only the ratio within one run means
much on a host whose speed drifts.
"""
import argparse
import random
import statistics
import time

from router.codec import LabelCodec
from router.dataset import load_examples
from router.prompting import tuned_prompt
from router.settings import Settings
from tuning.batches import encode_examples, epoch_batches
from tuning.config import TuningConfig
from tuning.objectives import LatePromptObjective
from tuning.tune_run import training_service

p = argparse.ArgumentParser()
p.add_argument("--examples", type=int, default=600)
p.add_argument("--batches", type=int, default=12)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--layer", type=int, default=4)
a = p.parse_args()

base = training_service(Settings()).engine.base
examples = load_examples("data/complaints.jsonl")[: a.examples]
config = TuningConfig(method="late-prompt", prompt_layer=a.layer, epochs=1, val_fraction=0.0)
items = encode_examples(examples, base.tokenizer, LabelCodec.for_tokenizer(base.tokenizer), tuned_prompt(),
                        config.max_input_tokens)
objective = LatePromptObjective(base, config, examples, items, [], [])
batches = epoch_batches(objective.train_items, 16, random.Random(0))[: a.batches]
print(f"layers {a.layer}-29, {len(batches)} batches of 16, widths "
      f"{sorted(max(i.states.shape[0] for i in b) for b in batches)}")
fast = objective.upper
losses = {}
for name in ("transformers", "fast_layers"):  # the same batch, no update: the two must give the same loss
    objective.upper = fast if name == "fast_layers" else None
    losses[name] = float(objective.loss(batches[0]).detach())
print(f"loss of the first batch: transformers' layers {losses['transformers']:.5f}, fast_layers "
      f"{losses['fast_layers']:.5f} (relative difference {abs(losses['fast_layers'] / losses['transformers'] - 1):.1e})")
times: dict[str, list[float]] = {"transformers": [], "fast_layers": []}
for rnd in range(a.rounds):
    for name in times:
        objective.upper = fast if name == "fast_layers" else None
        started = time.perf_counter()
        for batch in batches:
            objective.backward(batch)
        times[name].append((time.perf_counter() - started) / len(batches))
        print(f"round {rnd + 1}  {name:<13} {times[name][-1]:.3f} s/step", flush=True)
slow, quick = (statistics.median(times[k]) for k in times)
print(f"median: transformers' layers {slow:.3f} s, fast_layers {quick:.3f} s; {slow / quick:.2f}x")

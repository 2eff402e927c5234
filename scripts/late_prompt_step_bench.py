"""Time a late prompt's training step with each attention implementation, alternating, in one process.

    .venv/bin/python scripts/late_prompt_step_bench.py [--rounds 5] [--batch 16] [--tokens 42] [--layer 8]

One step = forward through layers K..L-1 of the embedded model (learned keys/values of 20 positions in front, bf16
autocast) and backward to the prompt, the batch split into one shard per torch thread as `triage tune` splits it
(`tuning.shards`), and once more as one shard at one thread. Random hidden states stand in for the cached ones: the
cost depends on shapes only. Prints seconds per step for each round and the median ratio sdpa / eager; the host's
speed drifts, so only the ratio within a run means much.
"""
import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from router.settings import Settings
from tuning.late_prompt import DecoderParts, eager_attention, run_layers
from tuning.shards import ShardedBackward
from tuning.tune_run import training_service

p = argparse.ArgumentParser()
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--steps", type=int, default=5, help="steps timed per round and implementation")
p.add_argument("--batch", type=int, default=16)
p.add_argument("--tokens", type=int, default=42)
p.add_argument("--layer", type=int, default=8)
p.add_argument("--positions", type=int, default=20)
a = p.parse_args()

model = training_service(Settings()).engine.base.model
parts = DecoderParts.of(model)
layers = range(a.layer, len(parts.layers))
generator = torch.Generator().manual_seed(0)
hidden = torch.randn(a.batch, a.tokens, model.config.hidden_size, generator=generator).to(torch.bfloat16)
shape = (1, model.config.num_key_value_heads, a.positions, model.config.hidden_size // model.config.num_attention_heads)
prefix = {i: (torch.randn(shape, generator=generator).requires_grad_(), torch.randn(shape, generator=generator)
              .requires_grad_()) for i in layers}


def loss(rows):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = parts.norm(run_layers(parts, hidden[rows[0]: rows[-1] + 1], a.layer, len(parts.layers), prefix,
                                    a.positions))
        return out[:, -5:].float().pow(2).mean()  # read at the last positions, as the decisions are


sharded = ShardedBackward(loss, lambda row: 1, torch.get_num_threads())
half = list(range(a.batch // 2))


def one_shard():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss(half).backward()
    finally:
        torch.set_num_threads(threads)


forms = {f"batch of {a.batch}, {torch.get_num_threads()} shards": lambda: sharded.run(list(range(a.batch))),
         f"{len(half)} rows, one thread": one_shard}
times: dict[tuple[str, str], list[float]] = {}
print(f"layers {a.layer}-{len(parts.layers) - 1}, {a.positions} prompt positions, {a.tokens} tokens per row")
for rnd in range(a.rounds):
    for form, run in forms.items():
        for impl in ("sdpa", "eager"):
            context = eager_attention(model) if impl == "eager" else nullcontext()
            with context:
                run()  # warm
                started = time.perf_counter()
                for _ in range(a.steps):
                    run()
                seconds = (time.perf_counter() - started) / a.steps
            times.setdefault((form, impl), []).append(seconds)
            print(f"round {rnd + 1}  {form:<28} {impl:<6} {seconds:.3f} s/step", flush=True)
for form in forms:
    sdpa, eager = (statistics.median(times[(form, impl)]) for impl in ("sdpa", "eager"))
    print(f"{form}: median sdpa {sdpa:.3f} s, eager {eager:.3f} s, sdpa/eager {sdpa / eager:.2f}x")

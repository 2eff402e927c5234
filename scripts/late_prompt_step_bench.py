"""Time a late prompt's training step with each implementation of its layers, alternating, in one process.

    .venv/bin/python scripts/late_prompt_step_bench.py [--rounds 5] [--batch 16] [--tokens 42] [--layer 8]

One step = forward through layers K..L-1 of the embedded model (learned keys/values of 20 positions in front, bf16
autocast) and backward to the prompt, the batch split into one shard per torch thread as `triage tune` splits it
(`tuning.shards`), and once more as one shard at one thread. The implementations: transformers' layers with the
fused attention kernel (sdpa) and with plain attention (eager), and `tuning.fast_layers` (fast; what `triage tune` runs
on a Llama model since 2026-12-05). Random hidden states stand in for the cached ones: the cost
depends on shapes only. Prints seconds per step for each round and the median ratios; the host's speed drifts, so
only the ratios within a run mean much.
"""
import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from router.settings import Settings
from tuning.fast_layers import UpperLayers
from tuning.late_prompt import DecoderParts, eager_attention, layer_inputs, run_layers
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


upper = UpperLayers(model, parts.layers, a.layer, len(parts.layers), torch.bfloat16)
use_fast = [False]


def loss(rows):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch = hidden[rows[0]: rows[-1] + 1]
        if use_fast[0]:
            _, (cos, sin), mask = layer_inputs(parts, batch, a.positions)
            with torch.autocast("cpu", enabled=False):
                out = upper.run(batch, prefix, cos, sin, mask)
        else:
            out = run_layers(parts, batch, a.layer, len(parts.layers), prefix, a.positions)
        out = parts.norm(out)
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
        for impl in ("sdpa", "eager", "fast"):
            use_fast[0] = impl == "fast"
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
    sdpa, eager, fast = (statistics.median(times[(form, impl)]) for impl in ("sdpa", "eager", "fast"))
    print(f"{form}: median sdpa {sdpa:.3f} s, eager {eager:.3f} s, fast {fast:.3f} s; sdpa/eager {sdpa / eager:.2f}x, "
          f"eager/fast {eager / fast:.2f}x")

"""Short late-prompt probes: one form of the soft prompt, a few epochs, scored on the training file's validation split.

    .venv/bin/python scripts/late_prompt_probe.py --n 40 --lr 0.1 --epochs 2 --threads 1 --tag n40 --out DIR

Forms (`--param`): raw (learned keys/values, as `triage tune --method late-prompt`), scaled (a change relative to each
layer's key/value spread), mlp (keys/values from an MLP over position embeddings, prefix-tuning's reparameterisation).
Prints each epoch's validation loss and exact-set (routed as serving routes); writes DIR/TAG.json. Never reads dev
or test. Two probes at one thread each use a 2-core machine better than one at two threads.
"""
import argparse, json, math, random, time
from pathlib import Path

import torch

from router.settings import Settings
from router.dataset import load_examples
from router.codec import LabelCodec
from router.prompting import tuned_prompt
from tuning.tune_run import training_service
from tuning.train import evaluate_loss, lr_at, split_validation
from tuning.config import TuningConfig
from tuning.objectives import LatePromptObjective, autocast_for
from tuning.batches import encode_examples, epoch_batches
from tuning.late_objective import late_prompt_loss

p = argparse.ArgumentParser()
p.add_argument("--K", type=int, default=8)
p.add_argument("--n", type=int, default=20)
p.add_argument("--lr", type=float, default=0.05)
p.add_argument("--epochs", type=int, default=2)
p.add_argument("--param", default="raw")  # raw | scaled | mlp
p.add_argument("--hid", type=int, default=512)
p.add_argument("--wd", type=float, default=0.0)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--bs", type=int, default=16)
p.add_argument("--tag", default="x")
p.add_argument("--max-steps", type=int, default=0)
p.add_argument("--out", default=".")
a = p.parse_args()
torch.set_num_threads(a.threads)
settings = Settings()
service = training_service(settings)
base = service.engine.base
cfg = TuningConfig(method="late-prompt", prompt_layer=a.K, num_virtual_tokens=a.n, learning_rate=min(max(a.lr, 0.001), 0.5), epochs=a.epochs, batch_size=a.bs)
examples = load_examples("data/complaints.jsonl")
train_set, val_set = split_validation(examples, cfg.val_fraction, cfg.seed)
codec = LabelCodec.for_tokenizer(base.tokenizer)
parts = tuned_prompt(False)
tr = encode_examples(train_set, base.tokenizer, codec, parts, cfg.max_input_tokens)
va = encode_examples(val_set, base.tokenizer, codec, parts, cfg.max_input_tokens)
t0 = time.time()
obj = LatePromptObjective(base, cfg, train_set, tr, val_set, va)
print(f"cache {time.time()-t0:.1f}s", flush=True)
lp = obj.prompt


class Reparam(torch.nn.Module):
    def __init__(self, lp, mode, hid):
        super().__init__()
        self.first_layer, self.length, self.frozen = lp.first_layer, lp.length, lp.frozen
        k0, v0 = lp.keys.detach().clone(), lp.values.detach().clone()  # [L,h,n,d]
        self.register_buffer("k0", k0); self.register_buffer("v0", v0)
        self.register_buffer("sk", k0.std(dim=(2, 3), keepdim=True)); self.register_buffer("sv", v0.std(dim=(2, 3), keepdim=True))
        self.mode = mode
        if mode == "scaled":
            self.dk = torch.nn.Parameter(torch.zeros_like(k0)); self.dv = torch.nn.Parameter(torch.zeros_like(v0))
        else:
            L, h, n, d = k0.shape
            self.emb = torch.nn.Parameter(torch.randn(n, hid) * 0.02 + 0)
            self.mlp = torch.nn.Sequential(torch.nn.Linear(hid, hid), torch.nn.Tanh(), torch.nn.Linear(hid, L * 2 * h * d))
            torch.nn.init.zeros_(self.mlp[2].weight); torch.nn.init.zeros_(self.mlp[2].bias)
            self.shape = (L, h, n, d)

    @property
    def num_layers(self):
        return len(self.frozen) + self.k0.shape[0]

    def kv(self):
        if self.mode == "scaled":
            return self.k0 + self.sk * self.dk, self.v0 + self.sv * self.dv
        L, h, n, d = self.shape
        out = self.mlp(self.emb)  # [n, L*2*h*d]
        out = out.view(n, L, 2, h, d).permute(2, 1, 3, 0, 4)  # [2,L,h,n,d]
        return self.k0 + self.sk * out[0], self.v0 + self.sv * out[1]

    def learned(self):
        k, v = self.kv()
        return {self.first_layer + i: (k[i][None], v[i][None]) for i in range(k.shape[0])}

    def all_layers(self):
        return {**dict(enumerate(self.frozen)), **self.learned()}


if a.param != "raw":
    obj.prompt = Reparam(lp, a.param, a.hid)
    print("k std per layer", [round(float(x), 2) for x in obj.prompt.sk.flatten(1).mean(1)][:5],
          "v std", [round(float(x), 2) for x in obj.prompt.sv.flatten(1).mean(1)][:5], flush=True)
prompt = obj.prompt
params = [q for q in prompt.parameters() if q.requires_grad]
print("trainable", sum(q.numel() for q in params), flush=True)
opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd)
rng = random.Random(0)
autocast = autocast_for(cfg)
nb = math.ceil(len(obj.train_items) / a.bs)
total = nb * a.epochs
schedule = cfg.model_copy(update={"learning_rate": a.lr})  # the tune's warm-up and cosine, at this probe's LR
u = 0; hist = []
start = time.time()
for ep in range(1, a.epochs + 1):
    prompt.train(True)
    tot, seen = 0.0, 0
    for i, items in enumerate(epoch_batches(obj.train_items, a.bs, rng)):
        loss = late_prompt_loss(obj.parts, prompt, items, "decisions", autocast)
        loss.backward()
        for g in opt.param_groups: g["lr"] = lr_at(u, total, schedule)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step(); opt.zero_grad(set_to_none=True); u += 1
        tot += float(loss.detach()) * len(items); seen += len(items)
        if i % 20 == 0:
            print(f"ep {ep} step {i}/{nb} loss {float(loss.detach()):.3f} {time.time()-start:.0f}s", flush=True)
        if a.max_steps and u >= a.max_steps: break
    vl = evaluate_loss(obj, obj.val_items)
    prompt.train(False)
    ve = obj.validation_exact_set()
    hist.append(dict(epoch=ep, train=tot / seen, val_loss=vl, val_exact=ve, t=time.time() - start))
    print(f"EPOCH {ep} train {tot/seen:.3f} val_loss {vl:.3f} val_exact {ve:.3f} t {time.time()-start:.0f}s", flush=True)
    if a.max_steps and u >= a.max_steps: break
Path(a.out).mkdir(parents=True, exist_ok=True)
(Path(a.out) / f"{a.tag}.json").write_text(json.dumps(dict(args=vars(a), hist=hist)))

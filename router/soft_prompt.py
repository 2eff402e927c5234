"""The late-prompt artifact format, and turning one into the prefix cache it is served from.

Files (beside `triage.json`)::

    soft_prompt.safetensors   keys, values: [layers - first_layer, kv_heads, n, head_dim], bfloat16 (the
                              precision the product serves in; older artifacts hold float32, read the same way)
    soft_prompt.json          how to apply them (below)

How to apply: the prompt occupies positions 0..n-1 in front of every input. At decoder layers
below `first_layer` those positions hold the keys/values the frozen model computes for the
tokens `init_ids` (a plain text prefix); at layers `first_layer` and up they hold the stored
keys/values (after rotary embedding, as a transformers cache stores them). The input starts at
position n. Nothing else of the model changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from router.devices import device_of

SOFT_PROMPT_WEIGHTS = "soft_prompt.safetensors"
SOFT_PROMPT_CONFIG = "soft_prompt.json"
LATE_PROMPT = "late-prompt"
STORED_DTYPE = torch.bfloat16


def save_late_prompt(directory: Path, keys: torch.Tensor, values: torch.Tensor, first_layer: int,
                     init_ids: Sequence[int], init_text: str) -> None:
    from safetensors.torch import save_file

    directory = Path(directory)
    # bf16 (half the file; serving runs in bf16) on the CPU whatever the device it was trained on: loads anywhere
    save_file({"keys": keys.detach().to(STORED_DTYPE).cpu().contiguous(),
               "values": values.detach().to(STORED_DTYPE).cpu().contiguous()},
              str(directory / SOFT_PROMPT_WEIGHTS))
    config = {
        "method": LATE_PROMPT,
        "first_layer": first_layer,
        "num_layers": first_layer + keys.shape[0],
        "num_virtual_tokens": keys.shape[2],
        "kv_heads": keys.shape[1],
        "head_dim": keys.shape[3],
        "init_ids": list(init_ids),
        "init_text": init_text,
        "how_to_apply": __doc__.split("How to apply: ", 1)[1].strip(),
    }
    (directory / SOFT_PROMPT_CONFIG).write_text(json.dumps(config, indent=1))


def read_late_prompt(directory: Path) -> tuple[dict, torch.Tensor, torch.Tensor]:
    from safetensors.torch import load_file

    config = json.loads((Path(directory) / SOFT_PROMPT_CONFIG).read_text())
    tensors = load_file(str(Path(directory) / SOFT_PROMPT_WEIGHTS))
    return config, tensors["keys"], tensors["values"]


def check_shape(config: dict, keys: torch.Tensor, values: torch.Tensor, model_config, where: Path) -> None:
    """Refuse a prompt whose shape does not fit the loaded model (another base, a damaged file)."""
    layers = model_config.num_hidden_layers
    kv_heads = getattr(model_config, "num_key_value_heads", None) or model_config.num_attention_heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // model_config.num_attention_heads
    want = (layers - config["first_layer"], kv_heads, config["num_virtual_tokens"], head_dim)
    for name, tensor in (("keys", keys), ("values", values)):
        if tuple(tensor.shape) != want:
            raise ValueError(f"{where / SOFT_PROMPT_WEIGHTS}: {name} has shape {tuple(tensor.shape)}, "
                             f"the loaded model needs {want}")
    if len(config["init_ids"]) != config["num_virtual_tokens"]:
        raise ValueError(f"{where / SOFT_PROMPT_CONFIG}: init_ids has {len(config['init_ids'])} tokens, "
                         f"num_virtual_tokens is {config['num_virtual_tokens']}")


@torch.no_grad()
def late_prompt_layers(model, config: dict, keys: torch.Tensor, values: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) [1, kv_heads, n, head_dim] in the model's dtype: text below, learned above."""
    ids = torch.tensor([config["init_ids"]], device=device_of(model))
    out = model(input_ids=ids, use_cache=True)
    text = [(k.detach(), v.detach()) for k, v, *_ in out.past_key_values]
    first = config["first_layer"]
    device, dtype = text[0][0].device, text[0][0].dtype  # the file's tensors are read onto the CPU
    learned = [(keys[i][None].to(device, dtype), values[i][None].to(device, dtype)) for i in range(keys.shape[0])]
    return text[:first] + learned

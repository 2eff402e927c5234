"""Tuned-model artifacts: the method's files plus triage's metadata and a model card.

Layout of a version directory::

    soft_prompt.safetensors     late prompt: learned keys/values (router.soft_prompt says how to apply them)
    soft_prompt.json            late prompt: first layer, length, initialization text
    ensemble.json, members/     prompt ensemble: soft prompts that vote (router.ensemble)
    adapter_config.json         PEFT methods (prompt, prefix, lora): PeftModel.from_pretrained loads it
    adapter_model.safetensors   PEFT methods
    triage.json                 base model + hash, data hash, parameters, loss curve, metrics, created
    README.md                   the model card
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from router.backends import PrefixCache, embeds_prefix_cache
from router.ensemble import ENSEMBLE_CONFIG, PROMPT_ENSEMBLE, read_ensemble_config
from router.packed_linear import pack_linears
from router.soft_prompt import LATE_PROMPT, SOFT_PROMPT_CONFIG, check_shape, late_prompt_layers, read_late_prompt

METADATA = "triage.json"
SOFT_PROMPT_METHODS = (LATE_PROMPT, "prompt", "prefix")


class ArtifactError(ValueError):
    """A tuned artifact that is missing, malformed or made for another base model."""


@dataclass
class TunedModel:
    """A tuned artifact ready to serve: a soft prompt (its keys/values in front of every input, on the shared
    base model), a prompt ensemble (`members`: soft prompts that vote), or a LoRA adapter (`model`: a copy of
    the base with the adapters merged in)."""

    path: Path
    method: str  # "late-prompt", "prompt" or "prefix" (soft prompts), "prompt-ensemble", or "lora"
    metadata: dict
    embeds: torch.Tensor | None  # prompt tuning: [n_virtual, hidden]
    prefix: PrefixCache  # keys/values every complaint is decoded after
    model: torch.nn.Module | None = None  # lora: a copy of the base with the adapters merged in
    members: tuple["TunedModel", ...] = ()  # prompt ensemble: its soft prompts (prefix: the first one's)
    # what an engine prepared from it (prefix with the template's head): released together with the model
    prepared: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_virtual_tokens(self) -> int:
        if self.method == "lora":
            return 0
        return self.prefix.length if self.embeds is None else self.embeds.shape[0]

    @property
    def version(self) -> str:
        return self.metadata.get("version") or self.path.name


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    meta_file = path / METADATA
    if not any((path / name).is_file() for name in ("adapter_config.json", SOFT_PROMPT_CONFIG, ENSEMBLE_CONFIG)):
        raise ArtifactError(f"{path}: not a tuned-model artifact (no {SOFT_PROMPT_CONFIG}, {ENSEMBLE_CONFIG} "
                            "or adapter_config.json)")
    if not meta_file.is_file():
        raise ArtifactError(f"{path}: missing {METADATA} (base model and training metadata)")
    try:
        return json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{meta_file}: not valid JSON ({exc})") from exc


def recorded_file_places(value: str, artifact: str | Path) -> list[Path]:
    """Where a file an artifact's triage.json records may be: relative to the project's checkout (how a file inside
    it is recorded), beside the artifact (a file that lay outside is recorded by name alone, and is kept there), or
    as written (absolute, or relative to the working directory)."""
    from router.settings import project_root

    if not value:
        return []
    places = [project_root() / value, Path(artifact).parent / value, Path(value)]
    return list(dict.fromkeys(places))


def check_base(metadata: dict, base, path: Path) -> None:
    want, have = metadata.get("base_model_sha256"), base.fingerprint
    if want != have:
        raise ArtifactError(
            f"{path} was tuned on base model {metadata.get('base_model')!r} (sha256 {str(want)[:12]}…), "
            f"but the loaded base model is {base.model_id!r} (sha256 {have[:12]}…); "
            "a soft prompt only works on the model it was tuned on: retune it, or set TRIAGE_BASE_MODEL to that model"
        )


@torch.no_grad()
def load_tuned_model(path: str | Path, base) -> TunedModel:
    """Load an artifact onto `base` (refused if tuned on another base model)."""
    from peft import PeftModel

    from router.modelio import float_copy

    path = Path(path)
    metadata = read_metadata(path)
    check_base(metadata, base, path)
    if metadata.get("method") == LATE_PROMPT:
        return _load_late_prompt(path, metadata, base)
    if metadata.get("method") == PROMPT_ENSEMBLE:
        return _load_prompt_ensemble(path, metadata, base)
    if metadata.get("method") == "lora":
        merged = merged_lora_model(base, path)
        pack_linears(merged)  # the merged copy only serves: its layers can be packed (bit-identical, faster)
        return TunedModel(path, "lora", metadata, None, PrefixCache.empty(), merged)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # PEFT cannot load onto int8 layers; a soft prompt only needs a float twin for as long as it is read
        host = float_copy(base.model) if base.precision == "int8" else base.model
        peft_model = PeftModel.from_pretrained(host, str(path), is_trainable=False)
    peft_model.eval()
    method = metadata.get("method", "prompt")
    prompt = peft_model.get_prompt(batch_size=1)
    if method == "prefix":
        if base.is_seq2seq:
            raise ArtifactError(f"{path}: prefix tuning is supported for causal models only")
        return TunedModel(path, method, metadata, None, PrefixCache.from_cache(prompt).to(base.model.dtype))
    embeds = prompt[0].detach().clone()
    prefix = PrefixCache.empty() if base.is_seq2seq else embeds_prefix_cache(base.model, embeds)
    return TunedModel(path, method, metadata, embeds, prefix)


def _load_late_prompt(path: Path, metadata: dict, base) -> TunedModel:
    if base.is_seq2seq:
        raise ArtifactError(f"{path}: a late prompt is for decoder-only models; the loaded base model is seq2seq")
    try:
        config, keys, values = read_late_prompt(path)
        check_shape(config, keys, values, base.model.config, path)
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read the soft prompt ({exc})") from exc
    layers = late_prompt_layers(base.model, config, keys, values)
    return TunedModel(path, LATE_PROMPT, metadata, None, PrefixCache(layers, config["num_virtual_tokens"]))


def _load_prompt_ensemble(path: Path, metadata: dict, base) -> TunedModel:
    try:
        config = read_ensemble_config(path)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from exc
    members = []
    for name in config["members"]:
        where = (path / name).resolve()
        if where.parent != (path / "members").resolve():
            raise ArtifactError(f"{path / ENSEMBLE_CONFIG}: member {name!r} is not a directory under members/")
        method = read_metadata(where).get("method")
        if method not in SOFT_PROMPT_METHODS:
            raise ArtifactError(f"{path / name}: a prompt ensemble's members are single soft prompts on the shared "
                                f"base model, not {method!r}")
        members.append(load_tuned_model(where, base))
    return TunedModel(path, PROMPT_ENSEMBLE, metadata, None, members[0].prefix, members=tuple(members))


def merged_lora_model(base, path: Path) -> torch.nn.Module:
    """A copy of the base model with the LoRA adapters merged (the shared base stays untouched).

    Each adapted weight becomes round(W + scale * B @ A) computed in fp32 from the served weight W,
    one layer at a time, so the copy never needs a full fp32 model in memory (int8 layers are
    dequantized into an fp32 copy first and the result quantized again).
    """
    import copy

    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    from router.modelio import apply_precision, float_copy, use_attention

    precision = base.precision
    host = float_copy(base.model) if precision == "int8" else copy.deepcopy(base.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = PeftModel.from_pretrained(host, str(path), is_trainable=False)
    dora = any(isinstance(m, LoraLayer) and any(getattr(m, "use_dora", {}).values()) for m in wrapped.modules())
    if dora:
        merged = wrapped.merge_and_unload()  # DoRA: PEFT's own merge
    else:
        with torch.no_grad():
            for module in wrapped.modules():
                if isinstance(module, LoraLayer):
                    weight = module.get_base_layer().weight
                    for adapter in module.active_adapters:
                        delta = module.get_delta_weight(adapter).float()
                        weight.data = (weight.data.float() + delta).to(weight.dtype)
        merged = wrapped.unload()  # the adapters are folded into the weights above
    merged.eval()
    merged.requires_grad_(False)
    use_attention(merged, base.tuned_attention)
    return apply_precision(merged, precision) if precision == "int8" else merged
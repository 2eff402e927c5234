"""Wrapping the frozen base model in a PEFT prompt-learning model, with text initialization."""

from __future__ import annotations

import copy

import torch
from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

from router.departments import INSTRUCTION
from tuning.config import TuningConfig


def _init_ids(tokenizer, text: str, n: int) -> torch.Tensor:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.tensor([ids[i % len(ids)] for i in range(n)])


def build_peft_model(base, config: TuningConfig):
    """A PEFT model over `base.model` whose only trainable weights are the soft prompt."""
    task = TaskType.SEQ_2_SEQ_LM if base.is_seq2seq else TaskType.CAUSAL_LM
    if config.method == "lora" and config.init_adapter:
        return _from_adapter(base, config.init_adapter)
    if config.method == "lora":
        # LoRA injects layers into the model it wraps: train on a copy so the shared base stays frozen and clean.
        peft_config = LoraConfig(task_type=task, r=config.lora_rank, lora_alpha=config.lora_alpha,
                                 lora_dropout=config.lora_dropout, target_modules="all-linear")
        return get_peft_model(copy.deepcopy(base.model), peft_config)
    if config.method == "prefix":
        if base.is_seq2seq:
            raise ValueError("--method prefix is supported for causal models; use --method prompt for seq2seq")
        peft_config = PrefixTuningConfig(task_type=task, num_virtual_tokens=config.num_virtual_tokens, prefix_projection=False)
    else:
        # For seq2seq the soft prompt goes before the encoder input only (one submodule), which is
        # what the serving path (Seq2SeqStepper) prepends.
        peft_config = PromptTuningConfig(
            task_type=task, num_virtual_tokens=config.num_virtual_tokens, prompt_tuning_init=PromptTuningInit.RANDOM,
            num_transformer_submodules=1,
        )
    model = get_peft_model(base.model, peft_config)
    if config.init == "text":
        _init_from_text(model, base, config)
    return model


@torch.no_grad()
def _init_from_text(model, base, config: TuningConfig) -> None:
    """Prompt: embeddings of the instruction's tokens. Prefix: their keys/values at every layer."""
    text = config.init_text or INSTRUCTION
    ids = _init_ids(base.tokenizer, text, config.num_virtual_tokens).to(base.model.device)
    weight = model.prompt_encoder[model.active_adapter].embedding.weight
    if config.method == "prompt":
        weight.copy_(base.model.get_input_embeddings()(ids).to(weight.dtype))
        return
    out = base.model(input_ids=ids[None], use_cache=True)
    rows = []
    for key, value, *_ in out.past_key_values:  # [1, heads, n, head_dim] each
        rows += [key[0].transpose(0, 1), value[0].transpose(0, 1)]  # [n, heads, head_dim]
    stacked = torch.stack(rows, dim=1)  # [n, layers*2, heads, head_dim]
    weight.copy_(stacked.reshape(weight.shape).to(weight.dtype))


def _from_adapter(base, path: str):
    """A trainable copy of an existing LoRA artifact's adapters on a copy of the base (refused on another base)."""
    import warnings

    from peft import PeftModel

    from router.artifact import ArtifactError, check_base, read_metadata

    metadata = read_metadata(path)
    if metadata.get("method") != "lora":
        raise ArtifactError(f"{path}: not a LoRA artifact (method {metadata.get('method')!r})")
    check_base(metadata, base, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PeftModel.from_pretrained(copy.deepcopy(base.model), str(path), is_trainable=True)

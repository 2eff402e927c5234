"""Tuning parameters, typed and validated the way watsonx Tuning Studio exposes them.

Ranges follow watsonx: batch size 1-16, epochs 1-50, learning rate 0.01-0.5
(PEFT prompt and prefix tuning; the late prompt takes 0.001-0.5, LoRA 0.00001-0.01), accumulation steps 1-128.
Defaults are the recipe of the shipped LoRA adapter r3 (`triage tune` without --method) and finish a
tune of the shipped training set in under 20 minutes on a 2-core CPU; the shipped default soft prompt
r5m took other values and three tunes (README, `make tune-late-prompt`). watsonx's own prompt-tuning
defaults are `method=prompt, epochs=20, learning_rate=0.3, accumulation_steps=16`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router.served_context import PRECEDENT_CHARS, uses_precedents


LR_RANGES = {"late-prompt": (0.001, 0.5), "prompt": (0.01, 0.5), "prefix": (0.01, 0.5), "lora": (1e-5, 0.01)}
DEFAULT_LR = {"late-prompt": 0.05, "prompt": 0.3, "prefix": 0.03, "lora": 0.001}
DEFAULT_EPOCHS = {"late-prompt": 6}  # other methods: the field's default


def cpu_has_bf16() -> bool:
    """bfloat16 matmuls are fast on x86 CPUs with AVX512-BF16 or AMX."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_bf16() -> bool:
    """bf16 autocast where it is fast: a CUDA GPU with bf16 (where TRIAGE_DEVICE=auto tunes), else a bf16 CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return True
    return cpu_has_bf16()


class TuningConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["late-prompt", "prompt", "prefix", "lora"] = Field(
        "lora",
        description=(
            "late-prompt: a soft prompt of learned keys/values at the decoder layers >= prompt_layer (the layers below "
            "read the initialization text, frozen, and are run once per training example); "
            "prompt: soft prompt at the input (shallow, PEFT); prefix: a learned key/value prefix at every layer "
            "(deep, P-tuning v2, PEFT); lora: low-rank adapters beside the frozen weights, not a soft prompt."
        ),
    )
    prompt_layer: int = Field(
        8, ge=0, le=200,
        description="late-prompt: first decoder layer with learned keys/values (0 = every layer; must be below the "
        "model's layer count). Higher is faster to train, lower learns more.",
    )
    prompt_dropout: float = Field(
        0.0, ge=0.0, le=0.5,
        description="late-prompt: share of the prompt's positions hidden from each training example (the same at every "
        "layer; never when serving), against memorizing the training set. 0 by default: 0.1 scored lower on the "
        "validation split (0.604 vs 0.702 exact-set).",
    )
    prompt_loss: Literal["decisions", "lm"] = Field(
        "decisions",
        description="late-prompt: decisions = cross-entropy of each choice the constrained decoder makes (a softmax over "
        "the tokens it compares); lm = the LM loss on every answer token over the whole vocabulary.",
    )
    selective_backprop: float = Field(
        1.0, ge=0.05, le=1.0,
        description="late-prompt: share of the training examples each epoch after the first trains on, drawn with "
        "preference for those whose loss was highest when last trained on (selective backprop, Jiang et al. 2019; "
        "tuning.selective_backprop); 1 = every example every epoch. Such an epoch costs this share of a full one.",
    )
    teacher: str | None = Field(
        None,
        description="late-prompt: a tuned artifact directory (e.g. the LoRA adapter) whose probabilities for each "
        "decoder decision on a training example become part of that decision's target (knowledge distillation); "
        "it must be tuned on the same base and must not have trained on this tune's validation split.",
    )
    cross_teacher: str | None = Field(
        None,
        description="late-prompt with a teacher: a second LoRA artifact tuned on other complaints than the teacher "
        "(out-of-fold distillation). A training example that one of the two trained on is taught by the other alone, "
        "whose probabilities on it are not a memorized label; the rest by both, averaged. Which complaints each "
        "trained on is redrawn from its triage.json (its training file, split and more-data files).",
    )
    teacher_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="late-prompt with a teacher: share of the teacher's probabilities in each decision's target "
        "(the rest is the label); 1 = the teacher alone.",
    )
    context: Literal["none", "precedents", "policy", "both"] = Field(
        "none",
        description="Retrieved text in front of every training complaint, as serving puts it: precedents (similar "
        "labeled complaints of the training split, never the example itself or a near-duplicate), policy "
        "(passages from the RAG store), both, or none. The artifact records it and serving retrieves the same.",
    )
    simulated_corrections: float = Field(
        0.0, ge=0.0, le=0.5,
        description="With precedents in the context: share of training examples rewritten as if a rule had just "
        "changed and supervisors had corrected similar complaints (rag.simulated_corrections): a precedent marked "
        "as a correction carries the new rule's label and so does the target, so the model learns that a "
        "supervisor's correction overrides what it learned; half as many get a correction that does not apply to "
        "them, whose target is unchanged. 0 = none.",
    )
    precedent_chars: int = Field(
        PRECEDENT_CHARS, ge=0, le=1000,
        description="With precedents in the context: characters of each precedent's complaint the prompt shows "
        "(cut at a word); 0 = its departments alone, a third of the prompt's tokens (retrieval has already judged "
        "which complaints are similar). The artifact records it and serving shows precedents the same way.",
    )
    init_adapter: str | None = Field(
        None,
        description="lora: start from this LoRA artifact's adapter weights (its rank and alpha are used) instead of "
        "fresh ones, e.g. to teach a model tuned without context to read retrieved context.",
    )
    init_prompt: str | None = Field(
        None,
        description="late-prompt: start from this late-prompt artifact's keys/values and initialization text (its "
        "prompt layer and length must match this tune's) instead of the initialization text's, e.g. to teach a "
        "prompt tuned without context to read retrieved context.",
    )
    train_examples: int | None = Field(
        None, ge=1,
        description="Train on this many examples of the training split (a seeded sample; the validation split and, "
        "with --context, the precedents' pool stay the whole split), for a tune that must fit a time budget.",
    )
    init: Literal["text", "random"] = Field(
        "text", description="Initialize from the business instruction text (its embeddings, or its keys/values for prefix), or randomly."
    )
    init_text: str | None = Field(None, description="Initialization text; default: the business instruction.")
    num_virtual_tokens: int = Field(20, ge=1, le=200, description="Length of the learned prompt/prefix.")
    batch_size: int = Field(16, ge=1, le=16, description="Examples per forward pass (watsonx: 1-16).")
    accumulation_steps: int = Field(1, ge=1, le=128, description="Batches whose gradients add up to one update (watsonx: 1-128).")
    epochs: int = Field(3, ge=1, le=50, description="Passes over the training set (watsonx: 1-50); late-prompt: 6 when not given.")
    learning_rate: float = Field(
        DEFAULT_LR["lora"], gt=0.0,
        description="Peak learning rate (watsonx: 0.01-0.5 for prompt and prefix tuning, default 0.3 and 0.03; "
        "0.00001-0.01 for LoRA, default 0.001). When not given, the method's default.",
    )
    lora_rank: int = Field(16, ge=1, le=128, description="LoRA rank (lora only).")
    lora_alpha: int = Field(32, ge=1, le=512, description="LoRA scaling numerator (lora only).")
    lora_dropout: float = Field(
        0.0, ge=0.0, le=0.5,
        description="LoRA dropout (lora only). 0 by default: dropout masks cost ~40% of a training step on a CPU.",
    )
    warmup_fraction: float = Field(0.06, ge=0.0, le=0.5, description="Share of updates with linearly rising LR.")
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    val_fraction: float = Field(
        0.1, ge=0.0, le=0.5, description="Share of the training file held out to pick the best epoch (never the dev set)."
    )
    early_stopping_patience: int = Field(3, ge=0, le=50, description="Epochs without validation improvement before stopping; 0 = never.")
    max_input_tokens: int = Field(256, ge=16, le=4096, description="Longer complaints are truncated when training.")
    seed: int = Field(0, description="Seed of the batch order, the initialization and (unless split_seed is given) "
                      "the validation split.")
    split_seed: int | None = Field(
        None, description="Seed of the validation split (default: seed). Keep it fixed while varying seed to compare "
        "runs on one split; with a teacher, keep the teacher's own split so the teacher never trained on it.",
    )
    bf16: bool = Field(default_factory=default_bf16,
                       description="Autocast matmuls to bfloat16 (default: on where torch sees a GPU with bf16, or the "
                                   "CPU has AVX512-BF16/AMX).")

    @model_validator(mode="before")
    @classmethod
    def _method_default_lr(cls, data):
        if isinstance(data, dict) and data.get("learning_rate") is None:
            data = {**data, "learning_rate": DEFAULT_LR.get(data.get("method") or "lora", DEFAULT_LR["lora"])}
        if isinstance(data, dict) and data.get("epochs") is None and (data.get("method") or "lora") in DEFAULT_EPOCHS:
            data = {**data, "epochs": DEFAULT_EPOCHS[data["method"]]}
        return data

    @model_validator(mode="after")
    def _check(self) -> "TuningConfig":
        if self.init_text is not None and not self.init_text.strip():
            raise ValueError("init_text must not be empty")
        if self.init_adapter is not None and self.method != "lora":
            raise ValueError("init_adapter: only a LoRA tune can start from a LoRA adapter")
        if self.teacher is not None and self.method != "late-prompt":
            raise ValueError("teacher: only a late-prompt tune learns from a teacher's decisions")
        if self.selective_backprop < 1 and self.method != "late-prompt":
            raise ValueError("selective_backprop: only a late-prompt tune records each example's loss")
        if self.cross_teacher is not None and self.teacher is None:
            raise ValueError("cross_teacher: a second teacher needs the first (--teacher)")
        if self.init_prompt is not None and self.method != "late-prompt":
            raise ValueError("init_prompt: only a late-prompt tune can start from a late prompt")
        if self.init_prompt is not None and (self.init_text is not None or self.init == "random"):
            raise ValueError("init_prompt: the starting prompt brings its own initialization text and values; "
                             "drop init_text and init=random")
        reads_precedents = uses_precedents(self.context)
        if self.precedent_chars != PRECEDENT_CHARS and not reads_precedents:
            raise ValueError("precedent_chars: it shapes retrieved precedents; use it with --context precedents or both")
        if self.simulated_corrections and not reads_precedents:
            raise ValueError("simulated_corrections: corrections reach the model as precedents; use it with "
                             "--context precedents or both")
        low, high = LR_RANGES[self.method]
        if not low <= self.learning_rate <= high:
            raise ValueError(
                f"learning_rate {self.learning_rate} is outside the range {low} to {high} for {self.method} tuning"
            )
        return self

    @property
    def teachers(self) -> list[str]:
        """The distillation teachers in order: the teacher, then the cross-teacher, where given."""
        return [t for t in (self.teacher, self.cross_teacher) if t]

    @property
    def validation_seed(self) -> int:
        """The seed the validation split is drawn with."""
        return self.seed if self.split_seed is None else self.split_seed


def field_range(name: str) -> tuple[float | None, float | None]:
    """A parameter's accepted (low, high), from its declared bounds (None where unbounded)."""
    metadata = {type(m).__name__: m for m in TuningConfig.model_fields[name].metadata}
    return getattr(metadata.get("Ge"), "ge", None), getattr(metadata.get("Le"), "le", None)


def field_default(name: str):
    """A parameter's declared default (help texts and forms read it here, so they never drift)."""
    return TuningConfig.model_fields[name].get_default(call_default_factory=False)


def describe_error(error: ValidationError) -> str:
    """One line per bad parameter, naming it and the accepted range."""
    lines = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "parameters"
        rule = ""
        if name in TuningConfig.model_fields:
            low, high = field_range(name)
            if low is not None and high is not None:
                rule = f" (allowed range {low} to {high})"
        lines.append(f"{name}: {item['msg']}{rule}")
    return "; ".join(lines)


def loss_unit(config: TuningConfig) -> str:
    """What one unit of the training loss is, for plots."""
    if config.method == "late-prompt" and config.prompt_loss == "decisions":
        return "loss (per decoder decision)"
    return "loss (per answer token)"


def describe_method(config: TuningConfig) -> str:
    """What a tune trains, in words (CLI and console messages)."""
    if config.method == "lora":
        return f"LoRA adapters (rank {config.lora_rank}, every linear layer; not a soft prompt)"
    if config.method == "late-prompt":
        return (f"a late soft prompt ({config.num_virtual_tokens} virtual tokens, learned keys/values at layers "
                f">= {config.prompt_layer}, {config.prompt_loss} loss)")
    where = "keys/values at every layer" if config.method == "prefix" else "input embeddings"
    return f"a PEFT {config.method}-tuning soft prompt ({config.num_virtual_tokens} virtual tokens, {where})"

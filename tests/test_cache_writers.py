"""Caches written by several processes at once: replicas starting together on an empty data directory.

Each writer builds under a unique temporary name beside the cache and renames it into place
(router/atomic.py), so both writers succeed and no reader ever sees a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from router import atomic

TESTS = Path(__file__).resolve().parent

# One writer process: waits for the start signal, then writes every cache `rounds` times, reading each back.
WRITER = r"""
import hashlib, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
from conftest import TINY_TRAIN, TOKENIZER_DIR, make_tiny_base
from router.dataset import Example
from router.draft import load_or_fit_draft
from router.modelio import _hash_file, _save_converted

cache, go, rounds, order = Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
tokenizer = AutoTokenizer.from_pretrained(TOKENIZER_DIR)
base = make_tiny_base(tokenizer)
examples = [Example(text, tuple(d.strip() for d in labels.split(","))) for text, labels in TINY_TRAIN]
blobs = sorted((cache.parent / "blobs").iterdir(), reverse=order == "reverse")
while not go.exists():
    time.sleep(0.002)
published = 0
for _ in range(rounds):
    published += _save_converted(base.model, tokenizer, cache / "models" / "tiny")
    loaded = AutoModelForCausalLM.from_pretrained(cache / "models" / "tiny", local_files_only=True)
    assert torch.equal(loaded.model.embed_tokens.weight, base.model.model.embed_tokens.weight)
    for blob in blobs:
        assert _hash_file(blob, cache) == hashlib.sha256(blob.read_bytes()).hexdigest()
    draft = load_or_fit_draft(examples, cache)
    assert draft is not None and draft.propose(["The kettle I want is out of stock."])[0]
print(json.dumps({"published": published}))
"""


def test_two_processes_writing_the_same_caches_at_once_both_succeed(tmp_path):
    cache = tmp_path / "cache"
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for i in range(20):
        (blobs / f"w{i:02d}.safetensors").write_bytes(os.urandom(4096) * (i + 1))
    go = tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(TESTS.parent))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(TESTS), str(cache), str(go), "8", order],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
               for order in ("forward", "reverse")]
    time.sleep(0.5)
    go.touch()  # both start writing at the same moment (each has loaded its imports and model by then)
    results = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, results):
        assert writer.returncode == 0, err[-3000:]
    published = [json.loads(out.strip().splitlines()[-1])["published"] for out, _ in results]
    assert sum(published) >= 1, "one writer's converted copy is in place"
    assert (cache / "models" / "tiny" / "model.safetensors").is_file()
    memo = json.loads((cache / "hashes.json").read_text())
    assert len(memo) == 20, "the memo is whole JSON with every file's hash (none lost to a concurrent writer)"
    leftovers = [p for p in cache.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_atomic_open_leaves_the_old_file_when_writing_fails(tmp_path):
    (tmp_path / "c").mkdir()
    path = tmp_path / "c" / "cache.json"
    path.write_text('{"old": true}')
    with pytest.raises(RuntimeError):
        with atomic.atomic_open(path) as handle:
            handle.write('{"new": ')
            raise RuntimeError("disk on fire")
    assert json.loads(path.read_text()) == {"old": True}
    assert sorted(p.name for p in path.parent.iterdir()) == ["cache.json"]


def test_publish_dir_replaces_an_incomplete_directory_and_keeps_a_complete_one(tmp_path):
    target = tmp_path / "c" / "model"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # no weights: incomplete, e.g. copied in by hand

    def build(weights: bytes):
        return lambda tmp: (tmp / "model.safetensors").write_bytes(weights)

    def done(p: Path) -> bool:
        return (p / "model.safetensors").is_file()

    assert atomic.publish_dir(target, build(b"first"), complete=done) is True
    assert (target / "model.safetensors").read_bytes() == b"first"
    assert atomic.publish_dir(target, build(b"second"), complete=done) is False, "a complete copy is kept"
    assert (target / "model.safetensors").read_bytes() == b"first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o700), "published with the umask's permissions"


def test_an_unreadable_hash_memo_is_recomputed_not_fatal(tmp_path):
    from router.modelio import _hash_file

    blob = tmp_path / "w.safetensors"
    blob.write_bytes(b"weights")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "hashes.json").write_text('{"cut": "sho')  # what an interrupted plain write leaves
    assert _hash_file(blob, tmp_path / "cache") == hashlib.sha256(b"weights").hexdigest()
    assert len(json.loads((tmp_path / "cache" / "hashes.json").read_text())) == 1


@pytest.mark.slow
@pytest.mark.realmodel
def test_two_replicas_starting_together_on_an_empty_data_dir_both_load_the_embedded_model(tmp_path):
    """The issue's failure: both dequantize the GGUF and cache it at once; neither may fail."""
    load = ("import sys; from router.modelio import load_base_model; from router.settings import Settings; "
            "base = load_base_model(Settings()); print(base.fingerprint, base.from_cache)")
    env = dict(os.environ, TRIAGE_DATA_DIR=str(tmp_path / "data"), TRIAGE_TORCH_THREADS="1")
    replicas = [subprocess.Popen([sys.executable, "-c", load], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env) for _ in range(2)]
    results = [r.communicate(timeout=600) for r in replicas]
    for replica, (_, err) in zip(replicas, results):
        assert replica.returncode == 0, err[-3000:]
    assert len({out.split()[0] for out, _ in results}) == 1
    converted = list((tmp_path / "data" / "cache" / "models").iterdir())
    assert [p.name.startswith("smollm2-") for p in converted] == [True], converted

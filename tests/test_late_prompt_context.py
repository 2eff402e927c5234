"""A late prompt tuned with retrieved precedents, and a late prompt that starts from a tuned one.

Real MiniLM embeddings and real Chroma; tiny random models.
"""

from __future__ import annotations

import json

import pytest
import torch

from rag.grounding import ChromaGrounder
from rag.training_context import TrainingContexts
from router.artifact import ArtifactError
from router.dataset import load_examples
from router.departments import DEPARTMENTS
from tests.test_context_tuning import encoder, precedent_store  # noqa: F401  (fixtures)
from tests.test_late_prompt import _config, _deep_tiny, _tune

ITEMS = {"Development": ["blender", "toaster", "kettle", "lamp", "fan", "radio"],
         "Warehouse, Packaging": ["chairs", "plates", "glasses", "bowls", "cups", "screws"],
         "Service": ["agent", "hotline", "clerk", "courier", "chat", "manager"],
         "Marketing": ["advert", "flyer", "banner", "poster", "catalog", "mailing"]}
SAYS = {"Development": "The {} stopped working after two days.",
        "Warehouse, Packaging": "Half of the {} were missing and the box was crushed.",
        "Service": "The {} was rude and hung up on me.",
        "Marketing": "The {} shows a price you do not honour."}


@pytest.fixture
def labeled_file(tmp_path):
    """24 complaints, six per label: enough for a stratified validation split."""
    path = tmp_path / "labeled.jsonl"
    path.write_text("".join(json.dumps({"input": SAYS[label].format(item), "output": label}) + "\n"
                            for label, items in ITEMS.items() for item in items))
    return path


def test_a_late_prompt_tuned_with_precedents_validates_and_serves_with_them(tokenizer, labeled_file, tmp_path,
                                                                            precedent_store, monkeypatch):
    from router.engine import Engine
    from router.service import RouterService
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    config = _config(context="precedents", epochs=2, val_fraction=0.25, prompt_layer=2)
    contexts = TrainingContexts("precedents", precedent_store.rag_top_k, precedent_store.precedents_k)
    built = {}

    def context_for(train_set, val_set, pool):
        built["it"] = contexts.build_for_tune(precedent_store, train_set, val_set, pool)
        return built["it"]

    asked = []
    real_route_many = Engine.route_many
    monkeypatch.setattr(Engine, "route_many", lambda self, texts, *a, **kw: asked.append(kw.get("contexts"))
                        or real_route_many(self, texts, *a, **kw))
    result = train(base, load_examples(labeled_file), config, context_for=context_for)
    assert result.n_val and len(result.val_exact) == 2
    assert asked == [built["it"].val] * 2, "each epoch's validation routing uses the split's retrieved precedents"
    assert all(c.startswith("Similar past complaints:\n") for c in built["it"].val)

    meta = build_metadata(base, config, result, labeled_file, "ctx-late", {"context": contexts.to_json()})
    artifact = save_artifact(result, meta, tmp_path / "ctx-late")
    assert json.loads((artifact / "triage.json").read_text())["context"]["kind"] == "precedents"
    service = RouterService(precedent_store, base=base, grounder=ChromaGrounder(precedent_store), tuned_path=artifact)
    routing = service.route("The toaster is dead, it never worked.")  # nothing asked: the artifact's context
    assert routing.rag and [p.kind for p in routing.passages] == ["precedent"] * 3
    assert routing.departments and set(routing.departments) <= set(DEPARTMENTS)
    assert service.tuned_model.model is None, "served from the shared base model"
    mixed = service.route_mixed(["The toaster is dead, it never worked."], [None])[0]
    assert mixed.rag and mixed.departments == routing.departments, "named per request, it brings its context too"


def test_a_late_prompt_can_start_from_a_tuned_one_of_the_same_shape(tokenizer, tiny_train_file, tmp_path):
    from safetensors.torch import load_file

    from tuning.artifacts import build_metadata, save_artifact
    from tuning.config import TuningConfig
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    first, _ = _tune(base, tiny_train_file, tmp_path / "first", prompt_layer=2, epochs=3)
    start = load_file(str(first / "soft_prompt.safetensors"))
    fresh = train(base, load_examples(tiny_train_file), _config(prompt_layer=2, epochs=1, learning_rate=0.001))
    again = train(base, load_examples(tiny_train_file),
                  _config(prompt_layer=2, epochs=1, learning_rate=0.001, init_prompt=str(first)))
    went_on = again.trained.prompt.keys.detach().float()
    assert torch.allclose(went_on, start["keys"].float(), atol=0.02), "it started from the tuned prompt"
    assert not torch.allclose(fresh.trained.prompt.keys.detach().float(), start["keys"].float(), atol=0.02)
    config = _config(prompt_layer=2, epochs=1, learning_rate=0.001, init_prompt=str(first))
    saved = save_artifact(again, build_metadata(base, config, again, tiny_train_file, "second"), tmp_path / "second")
    first_version = json.loads((first / "triage.json").read_text())["version"]
    assert json.loads((saved / "triage.json").read_text())["started_from"]["init_prompt"]["version"] == first_version
    assert f"(version {first_version})" in (saved / "README.md").read_text(), "the card names the version it went on from"

    with pytest.raises(ArtifactError, match="--prompt-layer 2"):
        train(base, load_examples(tiny_train_file), _config(prompt_layer=1, init_prompt=str(first)))
    lora, _ = _tune(base, tiny_train_file, tmp_path / "lora", method="lora", learning_rate=0.005, epochs=1)
    with pytest.raises(ArtifactError, match="must be a late-prompt artifact"):
        train(base, load_examples(tiny_train_file), _config(prompt_layer=2, init_prompt=str(lora)))
    with pytest.raises(ValueError, match="drop init_text"):
        TuningConfig(method="late-prompt", init_prompt=str(first), init_text="Route this.")
    with pytest.raises(ValueError, match="only a late-prompt tune"):
        TuningConfig(method="lora", init_prompt=str(first))

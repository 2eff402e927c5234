"""The late prompt on tiny random-weight models: cached training equals the plain forward, serving equals the
reference, several prompts share one base (and one batch), artifacts round-trip, bad parameters are refused."""

from __future__ import annotations

import json
from contextlib import nullcontext
from itertools import combinations

import pytest
import torch

from router.artifact import ArtifactError, load_tuned_model
from router.codec import LabelCodec
from router.departments import DEPARTMENTS
from router.engine import Engine, StrategyError
from tests.conftest import make_tiny_base

TEXTS = ["my blender died", "three of the four chairs are missing and the box was crushed", "rude agent on the phone",
         "the ad shows a model you do not sell", "nobody could fix my router", "the kettle is out of stock"]


def _config(**overrides):
    from tuning.config import TuningConfig

    values = dict(method="late-prompt", epochs=3, num_virtual_tokens=4, learning_rate=0.3, val_fraction=0.0,
                  batch_size=4, prompt_layer=1, bf16=False)
    return TuningConfig(**{**values, **overrides})


def _tune(base, train_file, out, **overrides):
    from router.dataset import load_examples
    from tuning.artifacts import build_metadata, save_artifact
    from tuning.train import train

    config = _config(**overrides)
    result = train(base, load_examples(train_file), config)
    return save_artifact(result, build_metadata(base, config, result, train_file, out.name), out), result


def _deep_tiny(tokenizer, seed=3):
    """A 4-layer tiny model, so a prompt can start in the middle (layers 2-3 learned, 0-1 cached)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    base = make_tiny_base(tokenizer, seed=seed)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    base.model = LlamaForCausalLM(config).eval().requires_grad_(False)
    return base


def cached_tiny_prompt(tokenizer, train_file, first_layer: int, dtype=torch.float32):
    """A 4-layer tiny model, a late prompt from `first_layer` moved off its initialization, and 6 training examples
    with their states entering that layer (computed under bf16 autocast when `dtype` is bf16)."""
    from router.dataset import load_examples
    from router.prompting import tuned_prompt
    from tuning.batches import encode_examples
    from tuning.late_prompt import DecoderParts, LatePrompt, init_ids, text_keys_values
    from tuning.layer_cache import cache_examples

    base = _deep_tiny(tokenizer)
    codec = LabelCodec.for_tokenizer(tokenizer)
    examples = load_examples(train_file)[:6]
    items = encode_examples(examples, tokenizer, codec, tuned_prompt(), 64)
    prompt = LatePrompt(text_keys_values(base.model, init_ids(tokenizer, "Route this complaint.", 5)), first_layer)
    with torch.no_grad():
        prompt.keys.add_(torch.randn_like(prompt.keys) * 0.3)
        prompt.values.add_(torch.randn_like(prompt.values) * 0.3)
    parts = DecoderParts.of(base.model)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == torch.bfloat16 else nullcontext()
    cached = cache_examples(parts, prompt, items, codec, [e.departments for e in examples], tokenizer.pad_token_id,
                            autocast, dtype)
    return base, parts, prompt, cached


def test_every_decision_is_one_the_grammar_offers(tokenizer):
    """The loss's decisions are exactly the choices of more than one token that generate()'s grammar allows."""
    from router.grammar import allowed_next
    from tuning.decisions import decisions_for

    codec = LabelCodec.for_tokenizer(tokenizer)
    for size in range(1, len(DEPARTMENTS) + 1):
        for departments in combinations(DEPARTMENTS, size):
            answer = codec.answer_ids(departments)
            expected = []
            for offset, token in enumerate(answer):
                allowed = allowed_next(codec, answer[:offset])
                assert token in allowed
                if len(allowed) > 1:
                    expected.append((offset, tuple(sorted(allowed)), token))
            got = [(d.offset, tuple(sorted(d.allowed)), d.target) for d in decisions_for(codec, departments)]
            assert got == expected, departments


@pytest.mark.parametrize("loss_name", ["decisions", "lm"])
def test_cached_lower_layers_give_the_loss_and_gradients_of_the_plain_forward(tokenizer, tiny_train_file, loss_name):
    from transformers import DynamicCache

    from tuning.decisions import decision_loss
    from tuning.late_objective import late_prompt_loss
    from tuning.late_prompt import eager_attention
    from tuning.layer_cache import input_ids, padded

    base, parts, prompt, cached = cached_tiny_prompt(tokenizer, tiny_train_file, first_layer=2)
    items = [item.encoded for item in cached]
    before = base.model.config._attn_implementation
    with eager_attention(base.model):  # as a training step runs (the plain forward below keeps the model's own)
        assert base.model.config._attn_implementation == "eager"
        fast = late_prompt_loss(parts, prompt, cached, loss_name, nullcontext())
    assert base.model.config._attn_implementation == before == "sdpa"
    fast_grads = torch.autograd.grad(fast, [prompt.keys, prompt.values])

    # the plain way: every layer, the whole prompt as a cache in front, nothing reused
    layers = prompt.all_layers()
    cache = DynamicCache([(layers[i][0].expand(len(items), -1, -1, -1), layers[i][1].expand(len(items), -1, -1, -1))
                          for i in range(prompt.num_layers)])
    ids = padded([input_ids(i) for i in items], tokenizer.pad_token_id)
    n, width = prompt.length, ids.shape[1]
    body = base.model.model(input_ids=ids, attention_mask=torch.ones(len(items), n + width, dtype=torch.long),
                            position_ids=torch.arange(n, n + width)[None].expand(len(items), -1), past_key_values=cache)
    final = body.last_hidden_state  # after the model's final norm
    if loss_name == "decisions":
        reads = [(r, len(item.encoded.prompt) - 1 + d.offset, d) for r, item in enumerate(cached) for d in item.decisions]
        plain = decision_loss(final, [r for r, _, _ in reads], [p for _, p, _ in reads], [d for _, _, d in reads],
                              base.model.lm_head.weight)
    else:
        reads = [(r, len(item.encoded.prompt) - 1 + j, token) for r, item in enumerate(cached)
                 for j, token in enumerate(item.encoded.answer)]
        logits = base.model.lm_head(final[[r for r, _, _ in reads], [p for _, p, _ in reads]])
        plain = torch.nn.functional.cross_entropy(logits, torch.tensor([t for _, _, t in reads]))
    plain_grads = torch.autograd.grad(plain, [prompt.keys, prompt.values])
    assert float(fast) == pytest.approx(float(plain), rel=1e-5)
    for a, b in zip(fast_grads, plain_grads):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4)
    assert prompt.keys.grad is None and all(not p.requires_grad for p in base.model.parameters())


def test_tuning_keeps_every_base_weight_bit_identical_and_the_artifact_is_small(tokenizer, tiny_train_file, tmp_path):
    import hashlib

    base = _deep_tiny(tokenizer)

    def digest():
        h = hashlib.sha256()
        for name, tensor in sorted(base.model.state_dict().items()):
            h.update(name.encode()), h.update(tensor.detach().contiguous().numpy().tobytes())
        return h.hexdigest()

    before = digest()
    artifact, result = _tune(base, tiny_train_file, tmp_path / "p", prompt_layer=2)
    assert digest() == before
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    files = {p.name for p in artifact.iterdir()}
    assert {"soft_prompt.safetensors", "soft_prompt.json", "triage.json"} <= files
    config = json.loads((artifact / "soft_prompt.json").read_text())
    assert config["method"] == "late-prompt" and config["first_layer"] == 2 and config["num_virtual_tokens"] == 4
    assert (artifact / "soft_prompt.safetensors").stat().st_size < 4 * 2 * 2 * 4 * 16 * 4 + 1000  # keys+values only
    card = (artifact / "README.md").read_text()
    assert "soft prompt" in card and "late deep prompt" in card and "[More Information Needed]" not in card
    for path in artifact.iterdir():
        if path.suffix in (".json", ".md"):
            assert str(tmp_path) not in path.read_text() and "/root/" not in path.read_text(), path.name


def test_served_prompt_equals_the_trained_one_and_the_plain_reference(tokenizer, tiny_train_file, tmp_path):
    from router.reference import load_reference, route_uncached

    base = _deep_tiny(tokenizer)
    artifact, result = _tune(base, tiny_train_file, tmp_path / "p", prompt_layer=2)
    soft = load_tuned_model(artifact, base)
    assert soft.model is None, "served on the shared base model: no copy"
    learned = result.trained.prompt.all_layers()
    for i, (k, v) in enumerate(soft.prefix.layers):
        assert torch.allclose(k, learned[i][0], atol=1e-6) and torch.allclose(v, learned[i][1], atol=1e-6)
    fast = Engine(base).route_many(TEXTS, "tuned", tuned=soft, batch_size=4)
    alone = [Engine(base).route_many([t], "tuned", tuned=soft, batch_size=1)[0] for t in TEXTS]
    slow = route_uncached(base, load_reference(base, artifact), TEXTS)
    assert [r.departments for r in fast] == [d.departments for d in slow] == [r.departments for r in alone]
    for f, s in zip(fast, slow):
        for name in DEPARTMENTS:
            assert f.confidence[name] == pytest.approx(s.confidence[name], abs=1e-4)


def test_two_prompts_in_one_batch_each_get_their_own_answer(tokenizer, tiny_train_file, tmp_path):
    base = _deep_tiny(tokenizer)
    first, _ = _tune(base, tiny_train_file, tmp_path / "a", prompt_layer=2)
    second, _ = _tune(base, tiny_train_file, tmp_path / "b", prompt_layer=1, num_virtual_tokens=6, seed=5, init="random")
    a, b = load_tuned_model(first, base), load_tuned_model(second, base)
    engine = Engine(base)
    alone_a = engine.route_many(TEXTS, "tuned", tuned=a)
    alone_b = engine.route_many(TEXTS, "tuned", tuned=b)
    assert [r.departments for r in alone_a] != [r.departments for r in alone_b], "two different prompts"
    prompts = [a if i % 2 else b for i in range(len(TEXTS))]
    mixed = engine.route_mixed(TEXTS, prompts, batch_size=len(TEXTS))
    for i, routing in enumerate(mixed):
        want = (alone_a if i % 2 else alone_b)[i]
        assert routing.departments == want.departments and routing.model_version == want.model_version
        for name in DEPARTMENTS:
            assert routing.confidence[name] == pytest.approx(want.confidence[name], abs=1e-5)


def test_a_prompt_is_refused_on_another_base_and_bad_parameters_name_their_range(tokenizer, tiny_train_file, tmp_path):
    from pydantic import ValidationError

    base = _deep_tiny(tokenizer)
    artifact, _ = _tune(base, tiny_train_file, tmp_path / "p", prompt_layer=2, epochs=1)
    other = make_tiny_base(tokenizer, seed=9, name="another")
    with pytest.raises(ArtifactError, match="tuned on base model"):
        load_tuned_model(artifact, other)
    with pytest.raises(ValueError, match="prompt_layer 4 is outside 0 to 3"):
        _tune(base, tiny_train_file, tmp_path / "q", prompt_layer=4)
    with pytest.raises(ValidationError, match="outside the range 0.001 to 0.5 for late-prompt"):
        _config(learning_rate=0.9)
    with pytest.raises(ValidationError, match="prompt_layer"):
        _config(prompt_layer=-1)
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.partial").exists()


def test_a_lora_model_cannot_join_a_mixed_batch(tiny_base, tiny_train_file, tmp_path):
    from tests.test_tuning_methods import _tune as tune_method

    lora, _ = tune_method(tiny_base, tiny_train_file, tmp_path, "lora")
    with pytest.raises(StrategyError, match="LoRA"):
        Engine(tiny_base).route_mixed(TEXTS[:2], [load_tuned_model(lora, tiny_base)] * 2)


@pytest.mark.parametrize("loss_name", ["decisions", "lm"])
def test_a_step_split_across_cores_gives_the_loss_and_gradients_of_one_batch(tokenizer, tiny_train_file, loss_name):
    """tuning.shards: the batch in one shard per core (threads), gradients summed in .grad as one batch's."""
    from router.dataset import load_examples
    from router.prompting import tuned_prompt
    from tuning.batches import encode_examples
    from tuning.late_objective import late_prompt_loss, loss_terms
    from tuning.late_prompt import DecoderParts, LatePrompt, init_ids, text_keys_values
    from tuning.layer_cache import cache_examples
    from tuning.shards import ShardedBackward, split_batch

    assert [len(p) for p in split_batch(list(range(7)), 2)] == [4, 3]
    assert split_batch([1], 2) == [[1]]
    base = _deep_tiny(tokenizer)
    codec = LabelCodec.for_tokenizer(tokenizer)
    examples = load_examples(tiny_train_file)[:7]
    items = encode_examples(examples, tokenizer, codec, tuned_prompt(), 64)
    prompt = LatePrompt(text_keys_values(base.model, init_ids(tokenizer, "Route this complaint.", 5)), first_layer=2)
    parts = DecoderParts.of(base.model)
    cached = cache_examples(parts, prompt, items, codec, [e.departments for e in examples], tokenizer.pad_token_id,
                            nullcontext(), torch.float32)

    def loss(batch):
        return late_prompt_loss(parts, prompt, batch, loss_name, nullcontext())

    whole = float(loss(cached))
    expected = [g.clone() for g in torch.autograd.grad(loss(cached) * 0.5, [prompt.keys, prompt.values])]
    threads = torch.get_num_threads()
    sharded = ShardedBackward(loss, lambda item: loss_terms(item, loss_name), shards=2)
    value = sharded.run(cached, scale=0.5)
    assert value == pytest.approx(whole, rel=1e-5)
    assert torch.get_num_threads() == threads, "the step gives the process its intra-op threads back"
    for got, want in zip([prompt.keys.grad, prompt.values.grad], expected):
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-4)

"""A late prompt tuned with retrieved precedents can learn from a LoRA teacher and from more data: the teacher reads
each complaint without the context (as it was tuned), a simulated correction is taught by its new label alone, and
the more-data complaints get precedents from the training split. Real MiniLM and Chroma; tiny random models."""

from __future__ import annotations

import json

import torch

from rag.training_context import TrainingContexts
from router.dataset import Example, load_examples
from tests.test_context_tuning import encoder, precedent_store  # noqa: F401  (fixtures)
from tests.test_late_prompt import _config, _deep_tiny
from tests.test_late_prompt_context import ITEMS, SAYS, labeled_file  # noqa: F401  (a fixture)
from tests.test_tuning_methods import _tune as tune_method

MORE = [("The {} died in a week.", "Development", "heater"), ("Most of the {} never came.", "Warehouse, Packaging", "forks"),
        ("The {} yelled at me.", "Service", "driver")]


def test_a_context_tune_learns_from_a_teacher_reading_each_complaint_without_its_context(tokenizer, labeled_file,
                                                                                       precedent_store, tmp_path):
    from router.artifact import merged_lora_model
    from router.codec import LabelCodec
    from tuning.batches import encode_examples
    from router.prompting import tuned_prompt
    from tuning.layer_cache import input_ids
    from tuning.train import train

    base = _deep_tiny(tokenizer)
    teacher_dir, _ = tune_method(base, labeled_file, tmp_path, "lora")
    more = [Example(text.format(item), [d.strip() for d in label.split(",")], n) for n, (text, label, item) in
            enumerate(MORE, 1)]
    config = _config(context="precedents", epochs=1, val_fraction=0.25, prompt_layer=2, teacher=str(teacher_dir),
                     teacher_weight=0.75, simulated_corrections=0.5)
    contexts = TrainingContexts("precedents", precedent_store.rag_top_k, precedent_store.precedents_k, 0.5)
    asked, built = [], {}

    def context_for(train_set, val_set, pool):
        asked.extend(train_set)
        built["it"] = contexts.build_for_tune(precedent_store, train_set, val_set, pool)
        return built["it"]

    result = train(base, load_examples(labeled_file), config, context_for=context_for, more=more)
    trained = built["it"].train_set
    assert [ex.input for ex in asked[-3:]] == [ex.input for ex in more]
    for ex, context in zip(trained[-3:], built["it"].train[-3:]):  # the more-data complaints read precedents too
        assert context.startswith("Similar past complaints:\n") and ex.input not in context
    relabeled = [old.departments != new.departments for old, new in zip(asked, trained)]
    assert any(relabeled) and not all(relabeled), "the test needs both kinds of example"

    items = result.trained.train_items
    plain = encode_examples(trained, tokenizer, LabelCodec.for_tokenizer(tokenizer), tuned_prompt(False),
                            config.max_input_tokens, None)
    teacher = merged_lora_model(base, teacher_dir)
    for item, bare, changed in zip(items, plain, relabeled):
        assert len(item.encoded.prompt) > len(bare.prompt), "the student reads the context"
        if changed:  # the teacher knows the old rule: the corrected target is the label alone
            assert all(d.soft is None for d in item.decisions)
            continue
        logits = teacher(input_ids=torch.tensor([input_ids(bare)])).logits[0]
        for d in item.decisions:
            want = torch.softmax(logits[len(bare.prompt) - 1 + d.offset, list(d.allowed)], -1)
            label = torch.tensor([float(t == d.target) for t in d.allowed])
            assert torch.allclose(torch.tensor(d.soft), 0.25 * label + 0.75 * want, atol=1e-5)

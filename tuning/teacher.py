"""Knowledge distillation for a late prompt: a tuned teacher's probabilities for each decoder decision.

A label says only which token each decision should pick. A teacher that routes well (the LoRA
adapter) also says how sure it is and which wrong department comes closest; mixed into each
decision's target, that richer signal is what the student soft prompt learns from, the way
distilled students learn from soft targets (Hinton et al., 2015). The teacher reads every
training example once, teacher-forced along the labelled answer, before the first step; it is
a merged copy of the base (`router.artifact.merged_lora_model`), dropped afterwards, so the
shared base model is never touched.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from router.dataset import Example
from tuning.config import TuningConfig
from tuning.decisions import decision_logits
from tuning.layer_cache import CachedExample, decision_reads, input_ids, length_batches, padded


def load_teacher(base, path: str | Path) -> torch.nn.Module:
    """The teacher artifact as a model of its own (a LoRA adapter merged into a copy of the base)."""
    from router.artifact import ArtifactError, check_base, merged_lora_model, read_metadata

    path = Path(path)
    metadata = read_metadata(path)
    check_base(metadata, base, path)
    if metadata.get("method") != "lora":
        raise ArtifactError(f"{path}: a teacher must be a LoRA artifact (this one is {metadata.get('method')!r})")
    return merged_lora_model(base, path)


def teacher_split_warning(teacher_path: str | Path, examples: Sequence[Example], data_path: str | Path,
                          config: TuningConfig) -> str | None:
    """Why this tune's validation score would be optimistic, if it would: the teacher trained on some of the
    complaints this tune validates on. What it trained on is `trained_inputs` (its recorded files, its split redrawn);
    this tune's own file stands in for a recorded file with the same sha256, wherever that one lies."""
    from router.artifact import ArtifactError, read_metadata
    from router.dataset import file_sha256, normalize
    from tuning.train import split_validation

    sha = file_sha256(data_path)
    try:
        trained = trained_inputs(teacher_path, known={sha: examples})
    except ArtifactError as exc:
        return f"{exc} (whether the teacher trained on this tune's validation split is not checked)"
    _, own_val = split_validation(examples, config.val_fraction, config.validation_seed)
    seen = sum(normalize(ex.input) in trained for ex in own_val)
    if not seen:
        return None
    metadata = read_metadata(teacher_path)
    if metadata["training_data"].get("sha256") != sha:
        return (f"the teacher {teacher_path} trained on {seen} of this tune's {len(own_val)} validation complaints "
                "(in its own training files), so the validation exact-set is optimistic")
    teacher = TuningConfig.model_validate(metadata["parameters"])
    _, teacher_val = split_validation(examples, teacher.val_fraction, teacher.validation_seed)
    if not teacher_val:  # a fraction of 0, or a file too small to hold any out
        advice = "the teacher held out no validation split"
    else:
        advice = (f"--split-seed {teacher.validation_seed} with --val-fraction at most {teacher.val_fraction} "
                  "validates on the teacher's own held-out complaints")
    return (f"the teacher {teacher_path} trained on {seen} of this tune's {len(own_val)} validation complaints, so "
            f"the validation exact-set is optimistic; {advice}")


@torch.no_grad()
def teacher_probabilities(teacher: torch.nn.Module, items: Sequence[CachedExample], pad_id: int, autocast,
                          batch_size: int = 32, on_progress: Callable[[int, int, float], None] | None = None
                          ) -> list[list[tuple[float, ...]]]:
    """For each example, for each of its decisions, the teacher's softmax over the tokens the decision compares.
    Right padding with causal attention keeps the pads out of every real position, as in the layer cache."""
    head = teacher.get_output_embeddings()
    out: list[list[tuple[float, ...]]] = [[] for _ in items]
    started, done = time.perf_counter(), 0
    for chunk in length_batches([input_ids(item.encoded) for item in items], batch_size):
        batch = [items[i] for i in chunk]
        ids = padded([input_ids(item.encoded) for item in batch], pad_id).to(head.weight.device)
        with autocast:
            hidden = teacher.model(input_ids=ids).last_hidden_state
        rows, positions, decisions = decision_reads(batch)
        logits, tokens = decision_logits(hidden, rows, positions, decisions, head.weight, head.bias)
        probabilities = torch.softmax(logits, dim=-1).tolist()  # 0 where a decision does not compare the token
        column = {t: c for c, t in enumerate(tokens)}
        for row, (n, d) in enumerate(zip(rows, decisions)):
            out[chunk[n]].append(tuple(probabilities[row][column[t]] for t in d.allowed))
        done += len(chunk)
        if on_progress:
            on_progress(done, len(items), time.perf_counter() - started)
    return out


def trained_inputs(path: str | Path, known: Mapping[str, Sequence[Example]] | None = None) -> set[str]:
    """The complaints (normalized) the tuned artifact at `path` trained on, redrawn from its triage.json: its training
    file minus the validation split its parameters draw (and the sample it kept), plus its more-data files. `known`:
    examples already read, by their file's sha256, used for a recorded file with that sha256. Refuses when a
    recorded file is gone or has changed, or its parameters cannot be read, since then nobody can say which
    complaints it saw."""
    from pydantic import ValidationError

    from router.artifact import ArtifactError, read_metadata, recorded_file_places
    from router.dataset import file_sha256, load_examples, normalize
    from tuning.train import split_validation, trained_sample

    metadata = read_metadata(path)
    data = metadata.get("training_data") or {}
    if not data.get("path") or not metadata.get("parameters"):
        raise ArtifactError(f"{path}: triage.json records no training data or parameters, so which complaints it "
                            "trained on is unknown")

    def recorded(entry: dict) -> Sequence[Example]:
        if known and entry.get("sha256") in known:
            return known[entry["sha256"]]
        file = next((f for f in recorded_file_places(entry["path"], path) if f.is_file()), None)
        if file is None or file_sha256(file) != entry.get("sha256"):
            raise ArtifactError(f"{path}: its training file {entry['path']} is missing or has changed since it was "
                                "tuned, so which complaints it trained on is unknown")
        return load_examples(file)

    try:
        config = TuningConfig.model_validate(metadata["parameters"])
    except ValidationError:
        raise ArtifactError(f"{path}: triage.json records parameters this version cannot read, so which complaints "
                            "it trained on is unknown") from None
    train_split, _ = split_validation(recorded(data), config.val_fraction, config.validation_seed)
    seen = trained_sample(train_split, config) + [ex for more in data.get("more", []) for ex in recorded(more)]
    return {normalize(ex.input) for ex in seen}


def out_of_fold(per_teacher: Sequence[Sequence[Sequence[tuple[float, ...]]]], seen: Sequence[Sequence[bool]]
                ) -> list[list[tuple[float, ...]]]:
    """Each example's decision probabilities averaged over the teachers that did not train on it (`seen[i][t]`), or
    over all of them where every teacher did."""
    out = []
    for i, seen_by in enumerate(seen):
        chosen = [t for t, was in enumerate(seen_by) if not was] or list(range(len(seen_by)))
        out.append([tuple(sum(per_teacher[t][i][d][k] for t in chosen) / len(chosen)
                          for k in range(len(per_teacher[chosen[0]][i][d])))
                    for d in range(len(per_teacher[chosen[0]][i]))])
    return out


def distillation_targets(base, teachers: Sequence[str | Path], items: Sequence[CachedExample],
                         examples: Sequence[Example], pad_id: int, autocast,
                         on_progress: Callable[[int, int, float], None] | None = None
                         ) -> list[list[tuple[float, ...]]]:
    """Each teacher's probabilities on every training example (one teacher's copy in memory at a time); with two,
    each example is taught by the one that did not train on it (`out_of_fold`)."""
    from router.dataset import normalize
    from tuning.late_prompt import eager_attention

    per_teacher = []
    for path in teachers:
        teacher = load_teacher(base, path)
        with eager_attention(teacher):
            per_teacher.append(teacher_probabilities(teacher, items, pad_id, autocast, on_progress=on_progress))
        del teacher
    if len(per_teacher) == 1:
        return per_teacher[0]
    trained = [trained_inputs(path) for path in teachers]
    return out_of_fold(per_teacher, [[normalize(ex.input) in t for t in trained] for ex in examples])


def with_teacher(items: Sequence[CachedExample], probabilities: Sequence[Sequence[tuple[float, ...]]],
                 weight: float, taught: Sequence[bool] | None = None) -> list[CachedExample]:
    """The examples with each decision's target = (1 - weight) x its label + weight x the teacher's probabilities;
    an example with `taught[i]` False keeps its label alone (a supervisor's correction the teacher never saw)."""
    out = []
    for n, (item, per_decision) in enumerate(zip(items, probabilities)):
        if taught is not None and not taught[n]:
            out.append(item)
            continue
        decisions = []
        for d, probs in zip(item.decisions, per_decision):
            label = [1.0 if t == d.target else 0.0 for t in d.allowed]
            decisions.append(replace(d, soft=tuple((1 - weight) * a + weight * b for a, b in zip(label, probs))))
        out.append(CachedExample(item.encoded, decisions, item.states))
    return out


__all__ = ["distillation_targets", "load_teacher", "out_of_fold", "teacher_probabilities", "teacher_split_warning",
           "trained_inputs", "with_teacher"]

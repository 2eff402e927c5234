"""The artifact's README.md: what it is, how it was made, what it measured (from its triage.json)."""

from __future__ import annotations

import json
from pathlib import Path

from router.artifact import METADATA

WHAT = {
    "late-prompt": (
        "a **soft prompt** (late deep prompt): {n} virtual positions in front of every complaint. At decoder layers "
        "below {k} they hold the frozen model's keys/values for the initialization text; at layers {k} and up, learned "
        "keys/values. Every base weight is unchanged; it is served from the shared base model's prefix cache "
        "(`soft_prompt.safetensors` + `soft_prompt.json`, which says exactly how to apply it)."
    ),
    "prompt": "a **soft prompt** (PEFT prompt tuning): {n} learned input embeddings in front of every complaint.",
    "prefix": "a **soft prompt** (PEFT prefix tuning): {n} learned keys/values at every decoder layer.",
    "lora": (
        "a **LoRA adapter** (PEFT, rank {rank} on every linear layer), not a soft prompt: it is served from a copy of "
        "the base model with the adapters merged in."
    ),
}


def _version_of(meta: dict, name: str) -> str:
    """' (version V)' of an artifact the tune read, as recorded when it ran; '' for artifacts made before that."""
    version = ((meta.get("started_from") or {}).get(name) or {}).get("version")
    return f" (version {version})" if version else ""


def _metrics_lines(meta: dict) -> list[str]:
    lines = []
    if meta.get("validation_exact_set"):
        best = meta.get("best_epoch") or len(meta["validation_exact_set"])
        lines.append(f"- validation split of the training file (picks the epoch): exact-set "
                     f"{meta['validation_exact_set'][best - 1]:.3f} at epoch {best}")
    for key in ("dev_metrics", "test_metrics"):
        m = meta.get(key)
        if m:
            how = f", {m['precision']}" if m.get("precision") else ""
            lines.append(f"- `{m.get('data')}` ({m.get('n')} complaints, held out{how}): exact-set "
                         f"{m['exact_set_accuracy']:.4f}, micro F1 {m['micro_f1']:.3f}, macro F1 {m['macro_f1']:.3f}")
    scenario = meta.get("scenario_metrics")
    if scenario:
        lines.append(f"- correction scenario (`{scenario['command']}`): new-rule complaints routed by the new rule "
                     f"{scenario['new_rule_share_before']:.3f} before the {scenario['corrections_saved']} corrections "
                     f"and {scenario['new_rule_share_after']:.3f} after, no retrain; {scenario['held_out']} held-out "
                     f"complaints {scenario['held_out_exact_before']:.3f} before and "
                     f"{scenario['held_out_exact_after']:.3f} after")
    return lines or ["- not evaluated yet (`triage eval --model <this directory>`)"]


def _context_lines(meta: dict) -> list[str]:
    context = meta.get("context") or {}
    if context.get("kind", "none") == "none":
        return []
    counts = ", ".join(f"{key} {context[key]}" for key in ("policy_k", "precedents_k", "precedent_chars")
                       if key in context)
    if context.get("precedent_chars") == 0:
        counts += ": each precedent shown by its departments alone"
    lines = [f"- tuned with retrieved context `{context['kind']}` ({counts}); serving retrieves the same for every "
             "complaint (precedents in training came from the training split, each example without itself and its "
             "near-duplicates)"]
    simulated = context.get("simulated_corrections")
    if simulated:
        made = simulated.get("train", {})
        lines.append(f"- trained with simulated corrections (share {simulated['share']:g}: {made.get('applies')} "
                     f"training examples whose nearest precedent of one of their rules was shown as a supervisor's "
                     f"correction adding a department, with the target following it; {made.get('does_not_apply')} "
                     "with a correction of another kind of complaint, target unchanged), so that a correction saved "
                     "as a precedent changes the routing of complaints like it without a retrain")
    return lines


def ensemble_card(meta: dict) -> str:
    members = meta.get("members", [])
    lines = [
        f"# {meta.get('version')}",
        "",
        f"Complaint routing for `triage`: a **prompt ensemble** of {len(members)} soft prompts on the one frozen base "
        "model (prompt ensembling, Lester et al. 2021, section 7). Every complaint is routed with the prompts in "
        f"shared batches and their answers vote: {meta.get('vote')}. Every base weight is unchanged; each prompt is "
        "served from the shared base model's prefix cache.",
        "",
        f"- base model: `{meta.get('base_model')}` (sha256 `{str(meta.get('base_model_sha256'))[:16]}…`); "
        "loading it on another base model is refused",
        f"- trainable parameters: {meta.get('trainable_parameters')} (all members)",
        f"- prompt format: `{meta.get('prompt_format')}`",
        *([f"- {meta['note']}"] if meta.get("note") else []),
        "",
        "## Members (`members/`, best first: the first breaks a vote without a majority)",
        "",
        *[f"- `{m.get('directory')}`: {m.get('method')}, {m.get('trainable_parameters')} parameters, tuned on "
          f"`{(m.get('training_data') or {}).get('path')}`"
          + "".join(f" + `{x}`" for x in (m.get("training_data") or {}).get("more", []))
          + f" in {m.get('train_seconds')} s; validation exact-set {_rounded(m.get('validation_exact_set'))}; its own card "
          "is in its directory" for m in members],
        f"- {meta.get('train_seconds')} s of tuning in all; assembled {meta.get('created')}",
    ]
    return "\n".join(lines + _measured(meta))


def model_card(meta: dict) -> str:
    if meta.get("method") == "prompt-ensemble":
        return ensemble_card(meta)
    params = meta.get("parameters", {})
    method = meta.get("method", "prompt")
    what = WHAT.get(method, method).format(n=params.get("num_virtual_tokens"), k=params.get("prompt_layer"),
                                          rank=params.get("lora_rank"))
    data = meta.get("training_data", {})
    curve = meta.get("loss_curve", {})
    lines = [
        f"# {meta.get('version')}",
        "",
        f"Complaint routing for `triage`: {what}",
        "",
        f"- base model: `{meta.get('base_model')}` (sha256 `{str(meta.get('base_model_sha256'))[:16]}…`); "
        "loading it on another base model is refused",
        f"- trainable parameters: {meta.get('trainable_parameters', 'n/a')}",
        f"- prompt format: `{meta.get('prompt_format')}`",
        *_context_lines(meta),
        "",
        "## How it was made",
        "",
        f"- training data: `{data.get('path')}` (sha256 `{str(data.get('sha256'))[:16]}…`), {data.get('n_train')} examples "
        f"trained on, {data.get('n_validation')} held out as the validation split",
        *[f"- more training data: `{m['path']}` (sha256 `{str(m['sha256'])[:16]}…`), {m['n']} examples added to the "
          "training split only" for m in data.get("more", [])],
        *([f"- distilled from the teacher `{params['teacher']}`{_version_of(meta, 'teacher')}: each decoder decision's "
           "target is "
           f"{1 - params.get('teacher_weight', 0.5):g} x the label + {params.get('teacher_weight', 0.5):g} x the "
           "teacher's probabilities"] if params.get("teacher") else []),
        *([f"- second teacher `{params['cross_teacher']}`{_version_of(meta, 'cross_teacher')}, tuned on other "
           "complaints: an example one teacher trained on is taught by the other alone, the rest by both, averaged"]
          if params.get("cross_teacher") else []),
        *([f"- started from the learned keys/values of `{params['init_prompt']}`{_version_of(meta, 'init_prompt')}"]
          if params.get("init_prompt") else []),
        *([f"- started from the LoRA adapters of `{params['init_adapter']}`{_version_of(meta, 'init_adapter')}"]
          if params.get("init_adapter") else []),
        *([f"- {meta['note']}"] if meta.get("note") else []),
        f"- parameters: `{json.dumps(params, sort_keys=True)}`",
        f"- {meta.get('train_seconds')} s in all ("
        + (f"{meta.get('cache_seconds', 0)} s running the frozen layers once"
           + (" and the teacher's pass" if params.get("teacher") else "") + ", " if method == "late-prompt" else "")
        + f"{meta.get('seconds_per_epoch')} s per epoch); best epoch {meta.get('best_epoch')}"
        + (" (stopped early)" if meta.get("stopped_early") else ""),
        f"- loss per epoch: train {[round(x, 4) for x in curve.get('train', [])]}, "
        f"validation {[round(x, 4) for x in curve.get('validation', [])]} (`loss.png`)",
        f"- created {meta.get('created')}",
    ]
    return "\n".join(lines + _measured(meta))


def write_model_card(directory: Path) -> Path:
    meta = json.loads((Path(directory) / METADATA).read_text())
    out = Path(directory) / "README.md"
    out.write_text(model_card(meta))
    return out


def _measured(meta: dict) -> list[str]:
    return ["", "## Measured", "", *_metrics_lines(meta), "",
            "Serve it with `TRIAGE_TUNED_MODEL=<this directory> triage serve`, or `triage route --model <this directory>`.",
            ""]


def _rounded(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"

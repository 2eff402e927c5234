"""triage tune: adapt the frozen model to labeled complaints (soft prompt or LoRA; watsonx-style parameters)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from router.cli.common import get_settings
from router.dataset import load_examples
from router.served_context import CONTEXTS
from tuning.config import DEFAULT_LR, LR_RANGES, field_default as _default


def _progress_printer(stream):
    def show(p):
        if p.stage in ("cache", "teacher"):
            what = "running the frozen layers below the prompt once" if p.stage == "cache" else \
                "the teacher reads each training example once"
            stream.write(f"\r{what}: {p.step}/{p.steps_total} examples "
                         f"({p.step / max(p.elapsed_s, 1e-9):.0f}/s) ETA {p.eta_s:.0f}s   ")
            if p.step == p.steps_total:
                stream.write("\n")
            stream.flush()
            return
        bar_width = 24
        filled = int(bar_width * p.step / max(1, p.steps_total))
        bar = "#" * filled + "-" * (bar_width - filled)
        if p.epoch_end:
            exact = "" if p.val_exact is None else f"  validation exact-set {p.val_exact:.3f}"
            stream.write(f"\repoch {p.epoch}/{p.epochs} done: train loss {p.loss:.4f}  validation loss {p.val_loss:.4f}"
                         f"{exact}  elapsed {p.elapsed_s:.0f}s  ETA {p.eta_s:.0f}s\n")
        else:
            stream.write(f"\r[{bar}] epoch {p.epoch}/{p.epochs} step {p.step}/{p.steps_total} loss {p.loss:.4f} "
                         f"lr {p.lr:.4f} ETA {p.eta_s:.0f}s   ")
        stream.flush()
    return show


@click.command()
@click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False), default="data/complaints.jsonl",
              show_default=True, help="Labeled training file (JSONL).")
@click.option("--more-data", "more_paths", type=click.Path(exists=True, dir_okay=False), multiple=True,
              help="More labeled examples (JSONL) for the training split only: the validation split is drawn from "
              "--data alone. Repeatable.")
@click.option("--out", "out_path", type=click.Path(file_okay=False), required=True, help="Artifact directory to write.")
@click.option("--method", type=click.Choice(["late-prompt", "prompt", "prefix", "lora"]), default=None,
              help="late-prompt (soft prompt: learned keys/values at the layers from --prompt-layer up), prompt (PEFT "
              "shallow soft prompt), prefix (PEFT deep prefix, every layer) or lora (low-rank adapters, not a soft "
              f"prompt); default {_default('method')}.")
@click.option("--prompt-layer", type=int, default=None,
              help=f"late-prompt: first layer with learned keys/values (default {_default('prompt_layer')}).")
@click.option("--prompt-dropout", type=float, default=None,
              help=f"late-prompt: share of prompt positions hidden from each training example (0-0.5, default "
              f"{_default('prompt_dropout')}).")
@click.option("--prompt-loss", type=click.Choice(["decisions", "lm"]), default=None,
              help=f"late-prompt: loss on the decoder's decisions or the LM loss (default {_default('prompt_loss')}).")
@click.option("--selective-backprop", type=float, default=None,
              help="late-prompt: share of the training examples each epoch after the first trains on, mostly those "
              f"with the highest loss when last seen (0.05-1, default {_default('selective_backprop')} = all).")
@click.option("--teacher", type=click.Path(exists=True, file_okay=False), default=None,
              help="late-prompt: a LoRA artifact whose probabilities for each decoder decision join the targets "
              "(distillation), e.g. router/artifacts/smollm2-complaints; it must not have trained on the validation split. "
              "With --context it reads each complaint without the context, as it was tuned.")
@click.option("--cross-teacher", type=click.Path(exists=True, file_okay=False), default=None,
              help="late-prompt with --teacher: a second LoRA artifact tuned on other complaints; each training "
              "example one teacher trained on is taught by the other alone (out-of-fold distillation).")
@click.option("--teacher-weight", type=float, default=None,
              help=f"late-prompt with --teacher: the teacher's share of each target (0-1, default {_default('teacher_weight')}).")
@click.option("--context", type=click.Choice(CONTEXTS), default=None,
              help="Retrieved text in front of each training complaint, as serving puts it: precedents (from the "
              "training split, never the example itself or a near-duplicate), policy (passages from the RAG store: "
              "run `triage rag ingest` first), both, or none (default). How many of each: TRIAGE_PRECEDENTS_K and "
              "TRIAGE_RAG_TOP_K (default 3), recorded in the artifact. Serving retrieves the same automatically.")
@click.option("--simulate-corrections", "simulated_corrections", type=float, default=None,
              help="With --context precedents|both: share of training examples rewritten as if a rule had just "
              "changed and a similar complaint had been corrected by a supervisor (0-0.5, default 0), so that "
              "corrections saved later change similar routings without a retrain.")
@click.option("--precedent-chars", type=int, default=None,
              help="With --context precedents|both: characters of each precedent's complaint shown in the prompt "
              f"(0-1000, default {_default('precedent_chars')}); 0 = its departments alone, a third of the tokens.")
@click.option("--init-prompt", type=click.Path(exists=True, file_okay=False), default=None,
              help="late-prompt: start from this late-prompt artifact's keys/values (same --prompt-layer and length).")
@click.option("--init-adapter", type=click.Path(exists=True, file_okay=False), default=None,
              help="lora: start from this LoRA artifact's adapters (its rank and alpha) instead of fresh ones.")
@click.option("--train-examples", type=int, default=None,
              help="Train on a seeded sample of this many examples of the training split (validation split and "
              "precedents' pool unchanged), to fit a time budget.")
@click.option("--init", "init", type=click.Choice(["text", "random"]), default=None, help="Initialization (default text).")
@click.option("--init-text", default=None, help="Initialization text (default: the business instruction).")
@click.option("--num-virtual-tokens", type=int, default=None, help=f"Length of the soft prompt (1-200, default {_default('num_virtual_tokens')}).")
@click.option("--batch-size", type=int, default=None, help=f"1-16 (default {_default('batch_size')}).")
@click.option("--epochs", type=int, default=None, help=f"1-50 (default {_default('epochs')}; watsonx prompt tuning: 20).")
@click.option("--learning-rate", type=float, default=None,
              help="Per method (range, default): " + ", ".join(f"{m} {lo:g}-{hi:g} ({DEFAULT_LR[m]:g})"
                                                             for m, (lo, hi) in LR_RANGES.items()) + ".")
@click.option("--accumulation-steps", type=int, default=None, help=f"1-128 (default {_default('accumulation_steps')}; watsonx: 16).")
@click.option("--lora-rank", type=int, default=None, help=f"LoRA rank (1-128, default {_default('lora_rank')}).")
@click.option("--lora-alpha", type=int, default=None, help=f"LoRA alpha (default {_default('lora_alpha')}).")
@click.option("--lora-dropout", type=float, default=None, help=f"LoRA dropout (default {_default('lora_dropout')}).")
@click.option("--val-fraction", type=float, default=None, help="Share of the training file held out to pick the best epoch.")
@click.option("--patience", "early_stopping_patience", type=int, default=None, help="Early-stopping patience in epochs.")
@click.option("--seed", type=int, default=None, help="Seed of the batch order, the initialization and (without "
              "--split-seed) the validation split (default 0).")
@click.option("--split-seed", type=int, default=None, help="Seed of the validation split alone (default: --seed), "
              "to compare seeds on one split.")
@click.option("--bf16/--fp32", "bf16", default=None, help="bfloat16 autocast (default: on where torch sees a GPU with bf16, or the CPU has AVX512-BF16/AMX).")
@click.option("--dev", "dev_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Held-out file to evaluate the result on; metrics are stored in the artifact.")
@click.option("--version", "version", default=None, help="Version name stored in the metadata (default: the directory name).")
def tune(data_path, more_paths, out_path, dev_path, version, **params):
    """Tune a soft prompt (late-prompt, prompt, prefix) or a LoRA adapter; the base model's weights never change.

    Writes the artifact directory: soft_prompt.safetensors + soft_prompt.json (late-prompt) or PEFT's
    adapter_config.json + adapter_model.safetensors (prompt, prefix, lora), with triage.json metadata,
    a model card (README.md) and loss.png, and prints the loss curve.
    """
    from pydantic import ValidationError

    from tuning.config import TuningConfig, describe_error, describe_method
    from tuning.plots import loss_terminal
    from tuning.tune_run import training_service, tune_artifact

    given = {k: v for k, v in params.items() if v is not None}
    try:
        config = TuningConfig(**given)
    except ValidationError as exc:
        raise click.BadParameter(describe_error(exc), param_hint="tuning parameters") from None
    settings = get_settings()
    examples = load_examples(data_path, settings.max_input_chars)
    more = {Path(p): load_examples(p, settings.max_input_chars) for p in more_paths}
    dev = load_examples(dev_path, settings.max_input_chars) if dev_path else []
    service = training_service(settings, context=config.context)
    added = "".join(f" + {len(e)} from {p} (training split only)" for p, e in more.items())
    click.echo(f"tuning {describe_method(config)} on {len(examples)} examples "
               f"from {data_path}{added}; base model {service.engine.base.model_id}", err=True)
    run = tune_artifact(service, examples, config, Path(data_path), Path(out_path), version=version, dev=dev,
                        dev_path=dev_path, more=more, on_progress=_progress_printer(sys.stderr),
                        on_message=lambda m: click.echo(m, err=True))
    result = run.result
    click.echo(loss_terminal(result.epoch_losses, result.val_losses), err=True)
    click.echo(f"best epoch {result.best_epoch}; {result.seconds:.0f}s ({result.seconds_per_epoch:.0f}s/epoch)", err=True)
    if run.dev_metrics is not None:
        click.echo(json.dumps({k: v for k, v in run.dev_metrics.items() if k not in ("per_department", "data",
                                                                               "precision")}), err=True)
    click.echo(str(run.out))

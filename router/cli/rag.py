"""triage rag: build and query the retrieval store (policy corpus and labeled precedents)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from router.cli.common import TriageGroup, get_settings


class RagGroup(TriageGroup):
    """Adds the retrieval errors to the clean 'triage: error: ...' messages."""

    def invoke(self, ctx: click.Context):
        from rag.corpus import CorpusError
        from rag.embeddings import EmbeddingModelError
        from router.retrieval import RetrievalUnavailable

        try:
            return super().invoke(ctx)
        except (CorpusError, RetrievalUnavailable, EmbeddingModelError) as exc:
            click.echo(f"triage: error: {exc}", err=True)
            ctx.exit(1)


@click.group(cls=RagGroup)
def rag() -> None:
    """Retrieval store: policy passages and labeled precedents that ground a routing."""


@rag.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
def ingest(directory: Path | None) -> None:
    """Index the policy corpus (default: data/policies, or TRIAGE_POLICIES_DIR). Safe to repeat."""
    from rag.ingest import ingest_policies
    from rag.store import location

    settings = get_settings()
    source = directory or settings.resolved_policies_dir
    click.echo(f"{source}: {ingest_policies(settings, source).summary('document')} chunks in {location(settings)}")


@rag.command("ingest-examples")
@click.argument("file", required=False, type=click.Path(path_type=Path))
def ingest_examples_command(file: Path | None) -> None:
    """Index labeled complaints as precedents (default: TRIAGE_SHOTS_FILE, else data/complaints.jsonl). Safe to repeat."""
    from rag.precedents import ingest_examples

    source = file or get_settings().resolved_shots_file
    click.echo(f"{source}: {ingest_examples(get_settings(), source).summary('example')} precedents")


@rag.command()
@click.argument("query", nargs=-1, required=True)
@click.option("-k", "k", type=click.IntRange(1, 50), default=None, help="How many results (default: TRIAGE_RAG_TOP_K).")
@click.option("--precedents", is_flag=True, help="Search the labeled precedents instead of the policy.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def search(query: tuple[str, ...], k: int | None, precedents: bool, as_json: bool) -> None:
    """Show the passages most similar to QUERY, with scores, ids and titles."""
    from dataclasses import asdict

    from rag.grounding import ChromaGrounder

    settings = get_settings()
    text = " ".join(query).strip()
    if not text:
        raise click.UsageError("the query is empty")
    grounder = ChromaGrounder(settings)
    if precedents:
        found = grounder.search_precedents(text, k or settings.precedents_k)
    else:
        found = grounder.search_policy(text, k or settings.rag_top_k)
    if as_json:
        click.echo(json.dumps([asdict(p) for p in found], indent=1, ensure_ascii=False))
        return
    for p in found:
        click.echo(f"{p.score:.3f}  {p.doc_id}  {p.title}\n       {p.snippet}")


@rag.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def status(as_json: bool) -> None:
    """Show what the retrieval store holds."""
    from rag.store import store_status

    info = store_status(get_settings())
    if as_json:
        click.echo(json.dumps(info, indent=1))
        return
    click.echo(f"store:       {info['location']}" + ("" if info["exists"] else " (not created: run `triage rag ingest`)"))
    click.echo(f"policy:      {info['policy_documents']} documents, {info['policy_chunks']} chunks")
    click.echo(f"precedents:  {info['precedents']} ({info['examples']} examples, {info['corrections']} corrections)")


@rag.command("eval")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("-k", "k", type=click.IntRange(1, 20), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def eval_command(file: Path | None, k: int, as_json: bool) -> None:
    """Retrieval recall@k of the labeling rule on FILE (default: data/dev.jsonl)."""
    from rag.evaluate import retrieval_recall
    from rag.grounding import ChromaGrounder
    from router.dataset import load_examples

    settings = get_settings()
    path = file or settings.resolved_dev_file
    result = retrieval_recall(ChromaGrounder(settings), load_examples(path, settings.max_input_chars), k)
    if as_json:
        click.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    click.echo(f"{path}: {result['n']} examples with a rule, recall@{k}: "
               f"any {result['recall_any']:.3f}, all {result['recall_all']:.3f}")
    click.echo("per rule: " + ", ".join(f"{r}: {v:.2f}" for r, v in result["per_rule"].items()))


@rag.command("bench")
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option("--n", "n", type=click.IntRange(1), default=160, show_default=True, help="How many complaints.")
@click.option("--batch-size", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def bench_command(file: Path | None, n: int, batch_size: int, as_json: bool) -> None:
    """Retrieval cost per complaint (embed + search): one at a time (p50/p99) and batched (default: data/dev.jsonl)."""
    from tuning.retrieval_bench import format_retrieval, retrieval_numbers
    from rag.grounding import ChromaGrounder
    from router.dataset import load_examples
    from router.settings import project_root

    settings = get_settings()
    path = file or project_root() / "data" / "dev.jsonl"
    texts = [ex.input for ex in load_examples(path, settings.max_input_chars)][:n]
    grounder = ChromaGrounder(settings)
    results = [retrieval_numbers(grounder, texts, policy=policy, precedents=precedents, batch_size=batch_size)
               for policy, precedents in ((False, True), (True, False), (True, True))]
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    click.echo(f"{path.name}, n={len(texts)}, batches of {batch_size}")
    click.echo(format_retrieval(results))

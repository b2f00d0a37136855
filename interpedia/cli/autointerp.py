"""The ``interpedia explain``, ``interpedia score`` and ``interpedia embed`` commands (added to the CLI group)."""

from __future__ import annotations

import sys
from typing import Any

import click

from interpedia.cli.common import factory_for, split_source
from interpedia.config import get_settings


def _bar(desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=0, desc=desc, unit="feat", file=sys.stderr, dynamic_ncols=True)


def _finish(summary: Any, aborted: Exception | None) -> None:
    click.echo(summary.describe())
    if aborted is not None:
        raise click.ClickException(f"stopped: {aborted} (nothing was stored for the failed features; rerun to resume)")
    if summary.failed:
        raise click.ClickException(f"{summary.failed} features failed and were not stored; rerun to retry them")


def _run(fn: Any, desc: str, unit: str, **kwargs: Any) -> None:
    from interpedia.autointerp.runner import RunAborted
    from interpedia.errors import UserError

    bar = _bar(desc)
    bar.unit = unit

    def total(n: int) -> None:
        bar.total = n
        bar.refresh()

    try:
        summary = fn(progress=bar.update, total=total, **kwargs)
        aborted = None
    except RunAborted as exc:
        summary, aborted = exc.summary, exc
    except (UserError, KeyError, ValueError) as exc:
        bar.close()
        raise click.ClickException(str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    bar.close()
    _finish(summary, aborted)


@click.command()
@click.option("--source", "source", required=True, help="MODEL/SOURCE, e.g. gpt2-small/6-res-jb.")
@click.option("--features", "features", help="Feature indexes, e.g. 0-99,120 (default: all).")
@click.option(
    "--type",
    "type_name",
    default="interpedia_top-tokens",
    show_default=True,
    help="Explanation type: oai_token-act-pair, np_max-act, np_max-act-logits, eleuther_acts_top20, "
    "or interpedia_top-tokens (offline, no LLM).",
)
@click.option("--model", "model_name", help="Explainer model sent to the LLM (default INTERPEDIA_LLM_MODEL).")
def explain(source: str, features: str | None, type_name: str, model_name: str | None) -> None:
    """Explain the features of a source in batch; a rerun skips features already explained (resume)."""
    from interpedia.autointerp.runner import explain_source, parse_ranges

    settings = get_settings()
    model_id, source_name = split_source(source)
    try:
        indexes = parse_ranges(features)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--features") from None
    _run(
        explain_source,
        f"explain {type_name}",
        "feat",
        factory=factory_for(settings),
        settings=settings,
        model_id=model_id,
        source_name=source_name,
        type_name=type_name,
        model_name=model_name,
        indexes=indexes,
    )


@click.command()
@click.option("--source", "source", required=True, help="MODEL/SOURCE, e.g. gpt2-small/6-res-jb.")
@click.option(
    "--scorer",
    "scorer_type",
    default="eleuther_embedding",
    show_default=True,
    help="Score type: eleuther_fuzz, eleuther_recall, eleuther_embedding (no LLM) or recall_alt.",
)
@click.option("--features", "features", help="Feature indexes, e.g. 0-99,120 (default: all).")
@click.option("--type", "explanation_type", help="Only explanations of this type.")
@click.option("--model", "scorer_model", help="Scorer model sent to the LLM (default INTERPEDIA_LLM_MODEL).")
def score(
    source: str, scorer_type: str, features: str | None, explanation_type: str | None, scorer_model: str | None
) -> None:
    """Score the explanations of a source in batch; a rerun skips explanations already scored."""
    from interpedia.autointerp.runner import parse_ranges, score_source

    settings = get_settings()
    model_id, source_name = split_source(source)
    try:
        indexes = parse_ranges(features)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--features") from None
    _run(
        score_source,
        f"score {scorer_type}",
        "expl",
        factory=factory_for(settings),
        settings=settings,
        model_id=model_id,
        source_name=source_name,
        scorer_type=scorer_type,
        scorer_model=scorer_model,
        explanation_type=explanation_type,
        indexes=indexes,
    )


@click.command()
@click.option("--missing", is_flag=True, help="Embed explanations that have no embedding yet.")
@click.option("--all", "recompute_all", is_flag=True, help="Re-embed every explanation (after changing model).")
@click.option("--reindex", is_flag=True, help="Postgres: rebuild the HNSW index, showing its progress.")
@click.option("--m", "m", type=int, help="HNSW m for --reindex (default INTERPEDIA_VECTOR_HNSW_M).")
@click.option("--ef-construction", type=int, help="HNSW ef_construction for --reindex.")
@click.option("--batch-size", default=256, show_default=True, type=int, help="Explanations per batch.")
def embed(
    missing: bool, recompute_all: bool, reindex: bool, m: int | None, ef_construction: int | None, batch_size: int
) -> None:
    """Explanation embeddings and their vector index; with no flag, print their status."""
    from interpedia.search.embeddings import EmbeddingError, get_embedder
    from interpedia.search.maintenance import fill_embeddings, index_status, reindex_postgres

    settings = get_settings()
    factory = factory_for(settings)
    if missing or recompute_all:
        bar = _bar("embed")
        bar.unit = "expl"

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        try:
            done = fill_embeddings(
                factory,
                get_embedder(settings),
                recompute_all=recompute_all,
                batch_size=batch_size,
                progress=bar.update,
                total=total,
            )
        except EmbeddingError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            bar.close()
        click.echo(f"embedded {done} explanations with {get_embedder(settings).name}")
    if reindex:
        engine = factory.kw["bind"]
        if engine.dialect.name != "postgresql":
            click.echo("SQLite needs no index build: its in-process index is exact and loads on first search")
        else:

            def report(row: dict[str, Any]) -> None:
                done_t, total_t = row.get("tuples_done") or 0, row.get("tuples_total") or 0
                done_b, total_b = row.get("blocks_done") or 0, row.get("blocks_total") or 0
                frac = f"{done_t}/{total_t} tuples" if total_t else f"{done_b}/{total_b} blocks"
                click.echo(f"  index build: {row.get('phase')}: {frac}", err=True)

            seconds = reindex_postgres(engine, settings, m=m, ef_construction=ef_construction, report=report)
            click.echo(f"rebuilt the HNSW index in {seconds:.1f}s")
    with factory() as session:
        click.echo(index_status(session).describe())

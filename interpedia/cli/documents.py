"""``interpedia documents build/status``: feature documents stored in the database (``store.feature_documents``).

A server answers ``GET /api/feature`` from a feature's stored document instead of building it (several
milliseconds of Python for a dashboard with examples). Servers on Postgres store each document they build; after
a bulk import, ``documents build`` stores them all at once, in batches of a few statements, on several processes.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import click

from interpedia.cli.common import factory_for, split_source
from interpedia.config import get_settings


def _sources(model_id: str | None, wanted: tuple[str, ...]) -> list[tuple[str, str]]:
    """The (model, source) pairs to work on: those named, a model's, or every source."""
    from sqlalchemy import select

    from interpedia.db.tables import Source
    from interpedia.store.catalogue import get_model, get_source

    factory = factory_for(get_settings())
    with factory() as session:
        if wanted:
            return [(m, get_source(session, m, s).name) for m, s in map(split_source, wanted)]
        stmt = select(Source.model_id, Source.name).order_by(Source.model_id, Source.id)
        if model_id is not None:
            get_model(session, model_id)
            stmt = stmt.where(Source.model_id == model_id)
        return [(m, s) for m, s in session.execute(stmt)]


def _fill(model_id: str, source_name: str, rebuild: bool, part: tuple[int, int], size: int) -> int:
    """One process's share of one source (the process makes its own connections)."""
    from interpedia.store.feature_documents import fill_source_documents

    factory = factory_for(get_settings(), migrate_first=False)
    return fill_source_documents(factory, model_id, source_name, size=size, missing_only=not rebuild, part=part)


@click.group("documents")
def documents_group() -> None:
    """Feature documents stored in the database, from which servers answer the feature API."""


@documents_group.command("build")
@click.option("--model", "model_id", help="Only this model's sources.")
@click.option("--source", "sources", multiple=True, help="Only MODEL/SOURCE (repeat it).")
@click.option("--rebuild", is_flag=True, help="Build every document again, not only those missing or stale.")
@click.option(
    "--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes (one per core is best)."
)
@click.option("--batch", type=click.IntRange(min=1), default=200, show_default=True, help="Features per transaction.")
def documents_build(model_id: str | None, sources: tuple[str, ...], rebuild: bool, workers: int, batch: int) -> None:
    """Store the document of every feature (of --model / --source) that has none, or a stale one."""
    from tqdm import tqdm

    from interpedia.errors import UserError

    try:
        pairs = _sources(model_id, sources)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    units = [(m, s, (k, workers)) for m, s in pairs for k in range(workers)]
    started = time.perf_counter()
    stored = 0
    with tqdm(total=len(units), desc="documents", unit="part", disable=None) as bar:
        if workers == 1:
            for m, s, part in units:
                stored += _fill(m, s, rebuild, part, batch)
                bar.update()
        else:
            # Fresh interpreters, not forks: a forked child would share the parent's pooled connections.
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                futures = [pool.submit(_fill, m, s, rebuild, part, batch) for m, s, part in units]
                for future in as_completed(futures):
                    stored += future.result()
                    bar.update()
    seconds = time.perf_counter() - started
    click.echo(
        f"stored {stored} feature documents of {len(pairs)} sources in {seconds:.1f} s"
        + (f" ({stored / seconds:.0f}/s)" if stored and seconds > 0 else "")
    )


@documents_group.command("status")
@click.option("--model", "model_id", help="Only this model's sources.")
def documents_status(model_id: str | None) -> None:
    """Per source: features, and how many of them have a current stored document."""
    from interpedia.store.feature_documents import count_documents

    factory = factory_for(get_settings())
    with factory() as session:
        rows = count_documents(session, model_id)
    if not rows:
        click.echo("no sources")
        return
    width = max(len(f"{m}/{s}") for m, s, _, _ in rows)
    for m, s, features, current in rows:
        click.echo(f"{f'{m}/{s}':<{width}}  {current:>10} of {features:>10} current")

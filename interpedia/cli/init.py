"""``interpedia init``: set up a team's Postgres database and write the settings file (see ``interpedia.db.setup``)."""

from __future__ import annotations

from pathlib import Path

import click

from interpedia.config import get_settings
from interpedia.db.setup import HNSW_INDEX, InitError, run_init


@click.command("init")
@click.option("--database-url", help="Pooled PostgreSQL URL the servers use (e.g. Neon's pooled connection string).")
@click.option("--direct-url", help="Direct (non-pooled) URL for migrations; default: the pooled URL.")
@click.option("--home", type=click.Path(path_type=Path), help="Where settings.env goes (default INTERPEDIA_HOME).")
@click.option("--m", "m", type=click.IntRange(2, 100), default=16, show_default=True, help="HNSW m.")
@click.option(
    "--ef-construction", type=click.IntRange(4, 1000), default=100, show_default=True, help="HNSW ef_construction."
)
def init_cmd(database_url: str | None, direct_url: str | None, home: Path | None, m: int, ef_construction: int) -> None:
    """Set up a team Postgres database: check it, migrate it, index it and write settings.env (safe to rerun)."""
    try:
        asked = not database_url
        if not database_url:
            database_url = click.prompt("Pooled PostgreSQL URL (postgresql://user:password@host/db)", hide_input=True)
        if not direct_url and asked:  # given --database-url alone, the same URL serves both (no pooler)
            direct_url = click.prompt(
                "Direct (non-pooled) URL, for migrations", default=database_url, show_default=False, hide_input=True
            )
    except click.Abort:
        raise click.UsageError("no input: pass --database-url (and --direct-url) to run without prompts") from None
    home = (home or get_settings().home).expanduser()
    try:
        report = run_init(database_url or "", direct_url or "", home, m=m, ef_construction=ef_construction)
    except InitError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"PostgreSQL {report.server_version}, pgvector {report.pgvector_version}: migrations applied")
    state = "created" if report.index_created else "already present"
    click.echo(f"vector index {HNSW_INDEX} {state} ({', '.join(report.index_options) or 'default options'})")
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"settings written to {report.settings_path}")
    if home != get_settings().home:
        click.echo(f"serve with: INTERPEDIA_HOME={home} interpedia serve")

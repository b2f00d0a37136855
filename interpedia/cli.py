"""The ``interpedia`` command: serve, import, export, apikey, db (and later generate, demo, explain...)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from interpedia.autointerp import commands as autointerp_commands
from interpedia.config import Settings, get_settings


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def _factory(settings: Settings, *, migrate_first: bool = True):  # type: ignore[no-untyped-def]
    from interpedia.db import make_engine, make_sessionmaker, migrate

    if migrate_first:
        migrate(settings.database_url_direct)
    return make_sessionmaker(make_engine(settings.database_url))


@click.group()
@click.version_option(package_name="interpedia")
def main() -> None:
    """interpedia: an open, self-hostable interpretability encyclopedia."""
    _setup_logging(get_settings())


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to INTERPEDIA_DATABASE_URL (safe to rerun)."""
    from interpedia.db import migrate

    settings = get_settings()
    migrate(settings.database_url_direct)
    click.echo("database is up to date")


@main.command("import")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Model id, when the files do not carry it (SAEDashboard).")
@click.option("--source-set", help="Source set name, e.g. res-jb (SAEDashboard).")
@click.option("--layer", help="Layer number or name, when the files do not carry it (SAEDashboard).")
@click.option("--creator", default="bot", show_default=True, help="User that owns the imported data.")
@click.option("--force", is_flag=True, help="Re-import batches already recorded as done.")
def import_cmd(path: Path, model_id: str | None, source_set: str | None, layer: str | None, creator: str,
               force: bool) -> None:
    """Import a SAEDashboard output directory or a Neuronpedia export (format detected)."""
    from interpedia.ingest import BadInput, DashboardOptions, import_path

    settings = get_settings()
    factory = _factory(settings)
    opts = DashboardOptions(model_id=model_id, source_set=source_set, layer=layer, creator_name=creator)
    try:
        summary = import_path(path, factory, options=opts, force=force, batch_size=settings.import_batch_features)
    except BadInput as exc:
        raise click.ClickException(f"import failed, nothing of the bad batch was written: {exc}") from None
    click.echo(f"imported {', '.join(summary.sources) or 'nothing'}: {summary.describe()}")


@main.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Only this model.")
@click.option("--source", "sources", multiple=True, help="Only these source ids (repeatable).")
def export_cmd(out: Path, model_id: str | None, sources: tuple[str, ...]) -> None:
    """Write sources in the Neuronpedia export layout (what `interpedia import` reads)."""
    from interpedia.ingest import export_np

    summary = export_np(_factory(get_settings()), out, model_id=model_id, source_ids=list(sources) or None)
    click.echo(f"exported {summary.sources} sources, {summary.features} features, {summary.activations} "
               f"activations, {summary.explanations} explanations to {out}")


@main.group()
def apikey() -> None:
    """API keys (sent as the x-api-key header)."""


@apikey.command("create")
@click.option("--user", "user_name", required=True, help="Owner; created when missing.")
@click.option("--admin", is_flag=True, help="Make the user an admin.")
@click.option("--label", help="A note to recognise the key by.")
def apikey_create(user_name: str, admin: bool, label: str | None) -> None:
    """Create an API key and print it (it is shown only this once)."""
    from interpedia.db import transaction
    from interpedia.store.users import InvalidUserName, create_api_key, ensure_user

    with transaction(_factory(get_settings())) as session:
        try:
            user = ensure_user(session, user_name)
        except InvalidUserName as exc:
            raise click.ClickException(str(exc)) from None
        if admin:
            user.admin = True
        key = create_api_key(session, user, label)
    click.echo(key)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve the web pages and the API."""
    import uvicorn

    from interpedia.db import migrate
    from interpedia.web.app import create_app

    settings = get_settings()
    migrate(settings.database_url_direct)
    click.echo(f"interpedia on http://{host}:{port} (database {settings.database_url.split('@')[-1]})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level.lower())


# explain, score, embed (autointerp and explanation search) live in interpedia.autointerp.commands.
for _command in (autointerp_commands.explain, autointerp_commands.score, autointerp_commands.embed):
    main.add_command(_command)


if __name__ == "__main__":
    main()

"""The ``interpedia`` group and its core commands: db, import, export, generate, apikey, user, serve."""

from __future__ import annotations

from pathlib import Path

import click

from interpedia.cli.common import factory_for, setup_logging
from interpedia.config import get_settings


@click.group()
@click.version_option(package_name="interpedia")
def main() -> None:
    """interpedia: an open, self-hostable interpretability encyclopedia."""
    setup_logging(get_settings())


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
@click.argument("path")
@click.option("--model", "model_id", help="Model id, when the files do not carry it (SAEDashboard).")
@click.option("--source-set", help="Source set name, e.g. res-jb (SAEDashboard).")
@click.option("--layer", help="Layer number or name, when the files do not carry it (SAEDashboard).")
@click.option("--creator", default="bot", show_default=True, help="User that owns the imported data.")
@click.option("--force", is_flag=True, help="Re-import batches already recorded as done.")
@click.option(
    "--download-dir",
    type=click.Path(path_type=Path),
    help="Where files of an s3:// or https:// export go (default: INTERPEDIA_DOWNLOAD_DIR, HOME/downloads).",
)
@click.option("--keep-downloads", is_flag=True, help="Keep downloaded files once imported (INTERPEDIA_KEEP_DOWNLOADS).")
def import_cmd(
    path: str,
    model_id: str | None,
    source_set: str | None,
    layer: str | None,
    creator: str,
    force: bool,
    download_dir: Path | None,
    keep_downloads: bool,
) -> None:
    """Import a SAEDashboard output directory or a Neuronpedia export: a directory, s3://BUCKET/PREFIX or https://."""
    from interpedia.errors import UserError
    from interpedia.ingest import BadInput, DashboardOptions, import_path
    from interpedia.ingest.remote import RemoteOptions, import_remote, is_remote
    from interpedia.search.embeddings import import_embedder

    settings = get_settings()
    factory = factory_for(settings)
    embed = import_embedder(settings)
    try:
        if is_remote(path):
            remote = RemoteOptions(
                download_dir=download_dir or settings.download_dir or settings.home / "downloads",
                keep=keep_downloads or settings.keep_downloads,
                endpoint_url=settings.s3_endpoint_url,
                unsigned=settings.s3_unsigned,
                attempts=settings.download_attempts,
                ahead=settings.download_ahead,
                timeout_s=settings.download_timeout_s,
            )
            result = import_remote(
                path,
                factory,
                options=remote,
                creator_name=creator,
                force=force,
                batch_size=settings.import_batch_features,
                embed=embed,
            )
            click.echo(result.downloads.describe())
            summary = result.summary
        else:
            opts = DashboardOptions(model_id=model_id, source_set=source_set, layer=layer, creator_name=creator)
            summary = import_path(
                Path(path), factory, options=opts, force=force, batch_size=settings.import_batch_features, embed=embed
            )
    except BadInput as exc:
        raise click.ClickException(f"import failed, nothing of the bad batch was written: {exc}") from None
    except UserError as exc:  # an address without a bucket, a bucket that is not there, a download that failed
        resumes = "\n(batches imported before it stay; the same command again resumes)" if exc.status == 503 else ""
        raise click.ClickException(f"import failed: {exc.message}{resumes}") from None
    click.echo(f"imported {', '.join(summary.sources) or 'nothing'}: {summary.describe()}")


@main.command("export")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--model", "model_id", help="Only this model.")
@click.option("--source", "sources", multiple=True, help="Only these source ids (repeatable).")
def export_cmd(out: Path, model_id: str | None, sources: tuple[str, ...]) -> None:
    """Write sources in the Neuronpedia export layout (what `interpedia import` reads)."""
    from interpedia.ingest import export_np

    summary = export_np(factory_for(get_settings()), out, model_id=model_id, source_ids=list(sources) or None)
    click.echo(
        f"exported {summary.sources} sources, {summary.features} features, {summary.activations} "
        f"activations, {summary.explanations} explanations to {out}"
    )


@main.command("generate")
@click.option(
    "--model",
    required=True,
    help="A Hugging Face model directory (GPT-2, Llama, Gemma 2/3, Qwen 2/3, Mistral; see docs/models.md), "
    "a TransformerLens directory (tl_config.json + model.safetensors + tokenizer), or a hub id / TransformerLens "
    "name (needs the hub).",
)
@click.option("--sae", required=True, help="SAELens SAE directory (cfg.json + sae_weights.safetensors) or RELEASE/ID.")
@click.option(
    "--dataset",
    required=True,
    help="Hugging Face dataset (save_to_disk directory or hub name) with a "
    "text or input_ids column, a .jsonl file with a text field, or a directory of .txt files.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Write SAEDashboard batch-N.json files and run.json here.")
@click.option("--into-db", is_flag=True, help="Import the dashboards into the configured database.")
@click.option("--context-size", default=128, show_default=True, type=click.IntRange(min=2), help="Tokens per prompt.")
@click.option("--n-prompts", default=24576, show_default=True, type=click.IntRange(min=1), help="Prompts to read.")
@click.option(
    "--prepend-bos/--no-prepend-bos",
    default=None,
    help="Start every prompt with BOS (default: as the SAE's metadata says, else when the tokenizer has a BOS).",
)
@click.option(
    "--exclude-bos/--include-bos",
    default=True,
    show_default=True,
    help="Zero activations at BOS/EOS/PAD tokens before any statistic (SAEDashboard's ignore set).",
)
@click.option(
    "--concat/--no-concat",
    default=True,
    show_default=True,
    help="Join text documents into full prompts; --no-concat: one document per prompt, shorter skipped.",
)
@click.option("--top-k", default=20, show_default=True, type=click.IntRange(min=1), help="Top examples per feature.")
@click.option(
    "--all-positions",
    "distinct_prompts",
    flag_value=False,
    default=True,
    help="Top examples over all positions, so one prompt may appear several times (SAEDashboard's "
    "choice); default: distinct prompts, each at its maximum.",
)
@click.option("--n-quantiles", default=5, show_default=True, type=click.IntRange(min=1), help="Activation intervals.")
@click.option(
    "--quantile-samples", default=5, show_default=True, type=click.IntRange(min=0), help="Examples per interval."
)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Prompts per forward.")
@click.option(
    "--shard-prompts",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Prompts per shard (the unit of resume and of Ray work).",
)
@click.option("--hook", "hook_name", help="Hook to read (default: the SAE's hook_name).")
@click.option("--model-id", help="Model id in the output (default: the SAE's metadata).")
@click.option("--source-set", help="Source set name, e.g. res-jb (default: the SAE's metadata or <kind>-<arch>).")
@click.option("--layer", help="Layer part of the source id (default: from the hook name).")
@click.option(
    "--features-per-file",
    default=128,
    show_default=True,
    type=click.IntRange(min=1),
    help="Features per batch file / import transaction.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the interval sampling.")
@click.option(
    "--fold-decoder-norm/--no-fold-decoder-norm",
    default=True,
    show_default=True,
    help="Report activations with decoder norms folded in (as SAEDashboard does).",
)
@click.option("--fold-ln-final", is_flag=True, help="Fold the final LayerNorm scale into W_U for the logit lens.")
@click.option(
    "--dfa/--no-dfa",
    default=None,
    help="Direct feature attribution per example (SAEs on blocks.N.attn.hook_z; default: whenever it is defined).",
)
@click.option("--split", "dataset_split", default="train", show_default=True, help="Dataset split.")
@click.option("--text-field", default="text", show_default=True, help="Text column / JSONL field.")
@click.option(
    "--work-dir",
    type=click.Path(path_type=Path),
    help="Where finished shards are kept for resume (default: OUT/.interpedia-work or INTERPEDIA_HOME).",
)
@click.option("--keep-work", is_flag=True, help="Keep the shards after a successful run.")
@click.option(
    "--ray", is_flag=True, help="Run shards on Ray workers (one per GPU; a local cluster unless --ray-address)."
)
@click.option("--ray-workers", type=click.IntRange(min=1), help="Ray workers (default: one per GPU or CPU).")
@click.option("--ray-address", help="Address of a running Ray cluster.")
@click.option("--creator", default="bot", show_default=True, help="User that owns the imported data (--into-db).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
def generate_cmd(
    out: Path | None, into_db: bool, work_dir: Path | None, keep_work: bool, progress: bool | None, **options: object
) -> None:
    """Generate feature dashboards for every feature of an SAE in one streaming pass."""
    from interpedia.errors import UserError
    from interpedia.generate import GenerateConfig, GenerateRun

    if out is None and not into_db:
        raise click.UsageError("nothing to write: give --out DIR and/or --into-db")
    settings = get_settings()
    if work_dir is None and out is None:
        work_dir = settings.home / "generate"
    try:
        cfg = GenerateConfig(
            out=str(out) if out else None,
            into_db=into_db,
            work_dir=str(work_dir) if work_dir else None,
            **options,  # type: ignore[arg-type]  # click's options, checked by GenerateConfig itself
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    factory = factory_for(settings) if into_db else None
    try:
        result = GenerateRun(cfg, factory=factory, keep_work=keep_work, progress=progress).run()
    except (UserError, ValueError, FileNotFoundError, OSError) as exc:
        raise click.ClickException(f"generate failed: {exc}") from None
    run = result.run
    where = ", ".join(filter(None, [str(out) if out else None, "the database" if into_db else None]))
    click.echo(
        f"{run['catalogue']['model_id']}/{run['catalogue']['source_id']}: {result.features_written} "
        f"dashboards, {len(result.dead)} dead features; pass {run['pass_seconds']:.1f}s "
        f"({run['tokens_per_second'] or 0:,.0f} tok/s), total {run['timings']['total_seconds']:.1f}s -> {where}"
    )


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

    with transaction(factory_for(get_settings())) as session:
        try:
            user = ensure_user(session, user_name)
        except InvalidUserName as exc:
            raise click.ClickException(str(exc)) from None
        if admin:
            user.admin = True
        key = create_api_key(session, user, label)
    click.echo(key)


@main.group()
def user() -> None:
    """Local accounts: create one, grant or take away the admin role."""


@user.command("create")
@click.argument("name")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password (asked for when not given).",
)
@click.option("--admin", is_flag=True, help="Make the user an admin.")
def user_create(name: str, password: str, admin: bool) -> None:
    """Create a local account that can sign in on the web with its password."""
    from interpedia.db import transaction
    from interpedia.errors import UserError
    from interpedia.store.users import create_account

    try:
        with transaction(factory_for(get_settings())) as session:
            account = create_account(session, name, password)
            account.admin = admin
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"created user {name}{' (admin)' if admin else ''}")


@user.command("admin")
@click.argument("name")
@click.option("--remove", is_flag=True, help="Take the admin role away instead.")
def user_admin(name: str, remove: bool) -> None:
    """Make a user an admin (admins can remove anyone's content)."""
    from interpedia.db import transaction
    from interpedia.errors import UserError
    from interpedia.store.users import set_admin

    try:
        with transaction(factory_for(get_settings())) as session:
            set_admin(session, name, not remove)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{name} is {'no longer ' if remove else ''}an admin")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--role",
    type=click.Choice(["all", "inference"]),
    default="all",
    show_default=True,
    help="all: pages, /api and /v1; inference: only the /v1 inference API (scale-out).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes answering on the port (default INTERPEDIA_SERVE_WORKERS, 1); rate limits are counted in the "
    "database, shared by all of them.",
)
def serve(host: str, port: int, role: str, workers: int | None) -> None:
    """Serve the web pages and the API."""
    import os

    import uvicorn

    from interpedia.db import migrate
    from interpedia.web.app import create_app

    settings = get_settings()
    workers = workers or settings.serve_workers
    migrate(settings.database_url_direct)
    click.echo(
        f"interpedia on http://{host}:{port} (database {settings.database_url.split('@')[-1]}"
        + (f", {workers} processes)" if workers > 1 else ")")
    )
    if workers == 1:
        # proxy_headers off: uvicorn would trust X-Forwarded-* from 127.0.0.1 on its own; the app trusts them only
        # under INTERPEDIA_TRUST_FORWARDED_FOR (the rate limits' caller and the URLs in answers, web/urls.py).
        uvicorn.run(
            create_app(settings, role=role),
            host=host,
            port=port,
            log_level=settings.log_level.lower(),
            proxy_headers=False,
        )
        return
    if settings.rate_limit_enabled and settings.rate_limit_store == "memory":
        click.echo(
            f"rate limits are counted per process (INTERPEDIA_RATE_LIMIT_STORE=memory): {workers} times each", err=True
        )
    # Each worker process builds its own app from the environment (uvicorn starts them with an import string).
    os.environ["INTERPEDIA_SERVE_ROLE"] = role
    uvicorn.run(
        "interpedia.web.app:create_served_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
    )

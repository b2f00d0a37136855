"""``interpedia hosts add/list/remove``: the host map, which inference-role servers answer which model's live
inference (activation tests, search via inference, top-k by token, steering) and graphs.

Web servers read the map from the database (every ``INTERPEDIA_INFERENCE_CATALOGUE_TTL_S`` seconds) and send a
request to a host that serves its model and sources; a model with no host runs in-process. ``add`` asks the host's
``/v1/health`` first, with this machine's ``INTERPEDIA_SECRET``, so a host that is down or holds another secret is
refused before any web server sends it a request.
"""

from __future__ import annotations

import click

from interpedia.cli.common import factory_for
from interpedia.config import Settings, get_settings
from interpedia.errors import UserError


def _health(settings: Settings, url: str) -> dict[str, object]:
    """The host's ``/v1/health``; ClickException naming what is wrong."""
    from interpedia.inference.remote import HostDown, HostTimeouts, RemoteHost

    host = RemoteHost(url, settings.secret, HostTimeouts(connect=settings.inference_host_connect_timeout_s, read=30))
    try:
        return host.health()
    except HostDown as exc:
        raise click.ClickException(f"inference host {url} is not answering: {exc.reason}") from None
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        host.close()


@click.group("hosts")
def hosts_group() -> None:
    """Inference hosts: which `serve --role inference` servers answer a model's live inference and graphs."""


@hosts_group.command("add")
@click.argument("url")
@click.option("--model", "model_id", required=True, help="The model it serves, e.g. gpt2-small.")
@click.option(
    "--source", "sources", multiple=True, help="A source it serves (repeat it); none: every source of the model."
)
@click.option("--graph", is_flag=True, help="A graph host: it traces attribution graphs (of --source-set).")
@click.option(
    "--source-set", "source_sets", multiple=True, help="With --graph: a transcoder set it traces; none: every one."
)
@click.option("--no-check", is_flag=True, help="Add it without asking its /v1/health first.")
def hosts_add(
    url: str, model_id: str, sources: tuple[str, ...], graph: bool, source_sets: tuple[str, ...], no_check: bool
) -> None:
    """Send MODEL's live inference (or, with --graph, its graphs) to the server at URL (http://gpu-1:5002)."""
    from interpedia.db import transaction
    from interpedia.store.hosts import add_host, check_host_url

    if source_sets and not graph:
        raise click.UsageError("--source-set names transcoder sets of a graph host: add --graph (or use --source)")
    if sources and graph:
        raise click.UsageError("a graph host serves transcoder sets: use --source-set with --graph")
    settings = get_settings()
    try:
        url = check_host_url(url)
        health = None if no_check else _health(settings, url)
        with transaction(factory_for(settings)) as session:
            kind = "graph" if graph else "inference"
            host = add_host(session, url, model_id, source_sets if graph else sources, kind)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    serves = ", ".join(host.sources) or "every " + ("transcoder set" if graph else "source")
    click.echo(f"host {host.id}: {host.url} serves {host.kind} for {host.model_id} ({serves})")
    if health is not None:
        click.echo(f"  health: {health.get('status')}, interpedia {health.get('version')}, {health.get('device')}")
    ttl = settings.inference_catalogue_ttl_s
    click.echo(f"web servers use it within INTERPEDIA_INFERENCE_CATALOGUE_TTL_S ({ttl:g} s)")


@hosts_group.command("list")
@click.option("--check", is_flag=True, help="Ask each host's /v1/health; exit 1 when one does not answer well.")
def hosts_list(check: bool) -> None:
    """The host map: every host, the model and sources it serves (and, with --check, whether it answers)."""
    from interpedia.store.hosts import read_host_map

    settings = get_settings()
    with factory_for(settings)() as session:
        hosts = read_host_map(session)
    if not hosts:
        click.echo("no inference hosts: every model's live inference runs in the web server's process")
        return
    health: dict[str, str] = {}
    failed = False
    for host in hosts:
        line = f"{host.id}  {host.url}  {host.model_id}  {host.kind}  {', '.join(host.sources) or '(all)'}"
        if check:
            if host.url not in health:
                try:
                    doc = _health(settings, host.url)
                    warm = doc.get("warm") or {}
                    models = ", ".join(warm.get("models", [])) if isinstance(warm, dict) else ""
                    health[host.url] = f"ok ({doc.get('device')}; warm: {models or 'nothing yet'})"
                except click.ClickException as exc:
                    health[host.url] = f"DOWN: {exc.message}"
                    failed = True
            line += f"  {health[host.url]}"
        click.echo(line)
    if failed:
        raise SystemExit(1)


@hosts_group.command("remove")
@click.argument("host")
@click.option("--model", "model_id", help="With a URL: only its mapping for this model.")
def hosts_remove(host: str, model_id: str | None) -> None:
    """Take HOST (an id from `hosts list`, or a URL: all its mappings) out of the host map."""
    from interpedia.db import transaction
    from interpedia.store.hosts import remove_hosts

    settings = get_settings()
    try:
        with transaction(factory_for(settings)) as session:
            removed = remove_hosts(session, host, model_id)
    except UserError as exc:
        raise click.ClickException(exc.message) from None
    for h in removed:
        click.echo(f"removed host {h.id}: {h.url} ({h.kind} for {h.model_id})")

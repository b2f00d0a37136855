"""The host map: add, list and remove the inference-role servers that answer a model's live inference or graphs.

A web server reads the whole map at once (:func:`read_host_map`, a handful of rows) and keeps it for a few
seconds; the inference service routes each request by it (``interpedia.inference.routing``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from interpedia.db.hosts import HOST_KINDS, InferenceHost, InferenceHostSource
from interpedia.errors import Conflict, Invalid, NotFound
from interpedia.store.catalogue import get_model, get_source, get_source_set

__all__ = ["HostRecord", "add_host", "check_host_url", "read_host_map", "remove_hosts"]


@dataclass(frozen=True)
class HostRecord:
    """One host of the map: a base URL serving a model's ``sources`` (empty: all of them) for ``kind``."""

    id: str
    url: str
    model_id: str
    kind: str  # "inference" or "graph" (then ``sources`` are transcoder source sets)
    sources: tuple[str, ...]

    def serves(self, sources: Sequence[str]) -> bool:
        """Whether this host answers for every one of ``sources``."""
        return not self.sources or all(s in self.sources for s in sources)


def check_host_url(url: str) -> str:
    """The URL without a trailing slash or ``/v1``; Invalid unless it is ``http(s)://host[:port][/prefix]``."""
    url = url.strip().rstrip("/")
    url = url.removesuffix("/v1")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise Invalid(f"host URL must look like http://gpu-1:5002, not {url!r}", field="url")
    return url


def add_host(
    session: Session, url: str, model_id: str, sources: Sequence[str] = (), kind: str = "inference"
) -> HostRecord:
    """Map ``url`` to serve ``model_id`` (only ``sources``, or all when empty); Conflict when already mapped."""
    if kind not in HOST_KINDS:
        raise Invalid(f"kind must be one of {', '.join(HOST_KINDS)}, not {kind!r}", field="kind")
    url = check_host_url(url)
    get_model(session, model_id)
    for name in sources:
        if kind == "graph":
            get_source_set(session, model_id, name)
        else:
            get_source(session, model_id, name)
    taken = session.scalar(
        select(InferenceHost).where(
            InferenceHost.url == url, InferenceHost.model_id == model_id, InferenceHost.kind == kind
        )
    )
    if taken is not None:
        raise Conflict(
            f"{url} already serves {kind} for model {model_id} (host {taken.id}): remove it first to change "
            "its sources",
            field="url",
        )
    row = InferenceHost(url=url, model_id=model_id, kind=kind)
    session.add(row)
    session.flush()
    names = tuple(dict.fromkeys(sources))
    session.add_all(InferenceHostSource(host_id=row.id, source=name) for name in names)
    session.flush()
    return HostRecord(row.id, url, model_id, kind, names)


def read_host_map(session: Session) -> list[HostRecord]:
    """Every host with the sources it serves, by model, kind and URL (two statements)."""
    hosts = list(
        session.scalars(select(InferenceHost).order_by(InferenceHost.model_id, InferenceHost.kind, InferenceHost.url))
    )
    served: dict[str, list[str]] = {}
    for host_id, source in session.execute(
        select(InferenceHostSource.host_id, InferenceHostSource.source).order_by(InferenceHostSource.source)
    ):
        served.setdefault(host_id, []).append(source)
    return [HostRecord(h.id, h.url, h.model_id, h.kind, tuple(served.get(h.id, ()))) for h in hosts]


def remove_hosts(session: Session, id_or_url: str, model_id: str | None = None) -> list[HostRecord]:
    """Remove the host with this id, or every mapping of this URL (of ``model_id`` only, when given); NotFound
    when nothing matches. Returns what was removed."""
    found = [h for h in read_host_map(session) if h.id == id_or_url]
    if not found:
        url = check_host_url(id_or_url) if "://" in id_or_url else id_or_url
        found = [h for h in read_host_map(session) if h.url == url and model_id in (None, h.model_id)]
    if not found:
        scope = f" for model {model_id}" if model_id else ""
        raise NotFound(f"no host {id_or_url!r}{scope} in the host map (interpedia hosts list)", field="host")
    ids = [h.id for h in found]
    session.execute(delete(InferenceHostSource).where(InferenceHostSource.host_id.in_(ids)))
    session.execute(delete(InferenceHost).where(InferenceHost.id.in_(ids)))
    return found

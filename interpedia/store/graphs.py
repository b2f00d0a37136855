"""Attribution graphs: store, read, list and delete them; their two-step uploads; saved subgraphs.

A graph belongs to a model (``metadata.scan``) and has a slug unique within it. Who sees it follows the rules
of sources (``store/access.py``): a PRIVATE graph (or one of a private model) exists only for its creator and
admins, an UNLISTED one opens by URL but is left out of listings. The JSON is kept gzip'd
(``db/graphs.py`` says where and why) and served as it is.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from interpedia.db.graphs import GraphData, GraphMetadata, GraphSubgraph, GraphUpload
from interpedia.db.tables import Model, Source, User
from interpedia.errors import Conflict, Forbidden, Invalid, NotFound, TooLarge
from interpedia.store.access import listed_condition, may_see
from interpedia.store.catalogue import get_model, get_source_set
from interpedia.store.formats import iso
from interpedia.store.graph_features import index_graph_features
from interpedia.store.graph_schema import SLUG_RE, validate_graph

__all__ = [
    "GRAPH_VISIBILITIES",
    "GraphSave",
    "create_upload",
    "delete_graph",
    "delete_subgraph",
    "finish_upload",
    "get_graph",
    "graph_doc",
    "graph_gz",
    "graph_source_set",
    "list_graphs",
    "list_owned_graphs",
    "list_subgraphs",
    "receive_upload",
    "save_graph",
    "save_subgraph",
    "slug_taken",
    "transcoder_sets",
    "subgraph_doc",
]

GRAPH_VISIBILITIES = ("PUBLIC", "UNLISTED", "PRIVATE")
GZIP_LEVEL = 6  # stored once, read many times: a better ratio is worth the few extra ms
UPLOAD_TTL = dt.timedelta(hours=1)
MIN_UPLOAD_BYTES = 16


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# --- documents ------------------------------------------------------------------------------------


def graph_doc(row: GraphMetadata, json_url: str) -> dict[str, Any]:
    """A graph's metadata as Neuronpedia's API returns it (``url`` is where its JSON is served)."""
    return {
        "id": row.id,
        "modelId": row.model_id,
        "slug": row.slug,
        "promptTokens": list(row.prompt_tokens or []),
        "prompt": row.prompt,
        "titlePrefix": row.title_prefix,
        "url": json_url,
        "sourceSetName": row.source_set_name,
        "isFeatured": row.is_featured,
        "visibility": row.visibility,
        "userId": row.creator_id,
        "numNodes": row.n_nodes,
        "numLinks": row.n_links,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


def subgraph_doc(row: GraphSubgraph, graph: GraphMetadata, user_name: str | None = None) -> dict[str, Any]:
    """A saved subgraph as the graph routes return it."""
    return {
        "id": row.id,
        "modelId": graph.model_id,
        "slug": graph.slug,
        "graphMetadataId": graph.id,
        "displayName": row.display_name,
        "pinnedIds": list(row.pinned_ids or []),
        "supernodes": list(row.supernodes or []),
        "clerps": list(row.clerps or []),
        "pruningThreshold": row.pruning_threshold,
        "densityThreshold": row.density_threshold,
        "isFeaturedSolution": row.is_featured,
        "userId": row.user_id,
        "user": {"name": user_name} if user_name else None,
        "createdAt": iso(row.created_at),
        "updatedAt": iso(row.updated_at),
    }


# --- graphs ---------------------------------------------------------------------------------------


def _visible(row: GraphMetadata, model: Model) -> bool:
    return may_see((model.visibility, row.visibility), (model.creator_id, row.creator_id))


def get_graph(session: Session, model_id: str, slug: str) -> GraphMetadata:
    """The graph ``slug`` of the model, or NotFound (also when it is hidden from the viewer)."""
    model = get_model(session, model_id)
    row = session.scalar(select(GraphMetadata).where(GraphMetadata.model_id == model.id, GraphMetadata.slug == slug))
    if row is None or not _visible(row, model):
        raise NotFound(f"graph {model_id}/{slug} not found", field="slug")
    return row


def _is_transcoder(source: Source) -> bool:
    cfg = source.saelens_config or {}
    meta = cfg.get("metadata") or {}
    return bool(
        meta.get("hook_name_out")
        or cfg.get("hook_name_out")
        or "transcoder" in str(cfg.get("architecture") or "")
        or str(source.weights_path or "").endswith(".safetensors")
    )


def transcoder_sets(session: Session, model_id: str) -> list[str]:
    """The model's source sets that hold transcoders the viewer may use, by name."""
    sources = session.scalars(select(Source).where(Source.model_id == model_id).order_by(Source.set_name))
    return sorted(
        {s.set_name for s in sources if s.set_name and _is_transcoder(s) and may_see((s.visibility,), (s.creator_id,))}
    )


def graph_source_set(session: Session, model_id: str, name: str | None) -> str:
    """The transcoder set a graph of the model is traced through: ``name``, else the model's only one."""
    model = get_model(session, model_id)
    if name:
        get_source_set(session, model.id, name)
        return name
    sets = transcoder_sets(session, model.id)
    if len(sets) == 1:
        return sets[0]
    if not sets:
        raise Invalid(f"model {model.id} has no transcoder set to trace graphs through", field="sourceSetName")
    raise Invalid(
        f"model {model.id} has several transcoder sets: choose one of {', '.join(sets)}", field="sourceSetName"
    )


def slug_taken(session: Session, model_id: str, slug: str) -> bool:
    """Whether the model has a graph of that slug (whoever owns it, whether or not the viewer sees it)."""
    stmt = select(GraphMetadata.id).where(GraphMetadata.model_id == model_id, GraphMetadata.slug == slug)
    return session.scalar(stmt) is not None


def graph_gz(session: Session, model_id: str, slug: str) -> bytes:
    """The graph JSON, gzip'd, as stored (NotFound as :func:`get_graph`)."""
    row = get_graph(session, model_id, slug)
    data = session.get(GraphData, row.id)
    if data is None:  # a row without its JSON cannot be written by save_graph (one transaction)
        raise NotFound(f"graph {row.model_id}/{row.slug} has no JSON", field="slug")
    return bytes(data.gz)


@dataclass(frozen=True)
class GraphSave:
    """Who stores a graph and how it is shown."""

    creator: User | None
    visibility: str = "PUBLIC"
    featured: bool = False
    title_prefix: str = ""
    replace: bool = False  # overwrite the creator's own graph of the same slug


def save_graph(session: Session, doc: Any, how: GraphSave, *, raw_json: bytes | None = None) -> GraphMetadata:
    """Validate a graph document and store it under its model (``metadata.scan``) and slug.

    Invalid names the first bad field; NotFound an unknown (or hidden) model; Conflict a slug taken (unless
    ``how.replace`` and the graph is the creator's own). ``raw_json`` is the document's bytes when the caller
    has them (an upload), so they are not serialised again.
    """
    graph = validate_graph(doc)
    if how.visibility not in GRAPH_VISIBILITIES:
        raise Invalid(f"visibility must be one of {', '.join(GRAPH_VISIBILITIES)}", field="visibility")
    meta = graph["metadata"]
    model = get_model(session, meta["scan"])
    existing = session.scalar(
        select(GraphMetadata).where(GraphMetadata.model_id == model.id, GraphMetadata.slug == meta["slug"])
    )
    if existing is not None:
        owner = how.creator is not None and (existing.creator_id == how.creator.id or how.creator.admin)
        if not (how.replace and owner):
            raise Conflict(f"graph {model.id}/{meta['slug']} already exists: choose another slug", field="slug")
        session.delete(existing)
        session.flush()
    body = raw_json if raw_json is not None else orjson.dumps(graph)
    details = meta.get("feature_details") or {}
    generator = ((meta.get("info") or {}).get("generator") or {}).get("name")
    row = GraphMetadata(
        model_id=model.id,
        source_set_name=details.get("neuronpedia_source_set"),
        slug=meta["slug"],
        prompt=meta["prompt"],
        prompt_tokens=list(meta["prompt_tokens"]),
        title_prefix=how.title_prefix or str(meta.get("title_prefix") or ""),
        creator_id=how.creator.id if how.creator is not None else None,
        visibility=how.visibility,
        is_featured=how.featured,
        n_nodes=len(graph["nodes"]),
        n_links=len(graph["links"]),
        json_bytes=len(body),
        generator=str(generator)[:200] if generator else None,
    )
    session.add(row)
    session.flush()
    session.add(GraphData(graph_id=row.id, gz=gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)))
    index_graph_features(session, row, graph)
    return row


def list_graphs(
    session: Session, model_id: str, *, query: str | None = None, limit: int = 200, viewer_id: str | None = None
) -> list[GraphMetadata]:
    """The model's listed graphs (and the viewer's own): featured first, then newest; ``query`` filters
    slug and prompt."""
    model = get_model(session, model_id)
    listed = listed_condition(GraphMetadata.visibility, GraphMetadata.creator_id)
    stmt = select(GraphMetadata).where(GraphMetadata.model_id == model.id, listed)
    if query:
        pattern = f"%{query.strip().lower()}%"
        stmt = stmt.where(
            or_(func.lower(GraphMetadata.slug).like(pattern), func.lower(GraphMetadata.prompt).like(pattern))
        )
    stmt = stmt.order_by(GraphMetadata.is_featured.desc(), GraphMetadata.created_at.desc()).limit(limit)
    return list(session.scalars(stmt))


def list_owned_graphs(session: Session, user: User) -> list[GraphMetadata]:
    """The user's own graphs, newest first."""
    return list(
        session.scalars(
            select(GraphMetadata)
            .where(GraphMetadata.creator_id == user.id)
            .order_by(GraphMetadata.created_at.desc(), GraphMetadata.id)
        )
    )


def delete_graph(session: Session, user: User, model_id: str, slug: str) -> None:
    """Delete a graph the user owns (admins: any), with its JSON and subgraphs."""
    row = get_graph(session, model_id, slug)
    if row.creator_id != user.id and not user.admin:
        raise Forbidden(f"graph {model_id}/{slug} belongs to another user", field="slug")
    session.delete(row)
    session.flush()


# --- the two-step upload --------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_upload(
    session: Session, user: User, filename: str, content_length: int, max_bytes: int
) -> tuple[GraphUpload, str]:
    """Book an upload of ``content_length`` gzip'd bytes; returns the row and the one-shot token for its PUT URL."""
    if not filename.endswith(".json") or len(filename) > 300:
        raise Invalid("filename must end in .json (at most 300 characters)", field="filename")
    if content_length < MIN_UPLOAD_BYTES:
        raise Invalid(f"contentLength must be at least {MIN_UPLOAD_BYTES} bytes", field="contentLength")
    if content_length > max_bytes:
        raise TooLarge(
            f"contentLength {content_length} is over the {max_bytes}-byte limit (INTERPEDIA_GRAPH_MAX_UPLOAD_BYTES)",
            field="contentLength",
        )
    session.execute(delete(GraphUpload).where(GraphUpload.expires_at < _now()))
    token = secrets.token_urlsafe(32)
    row = GraphUpload(
        user_id=user.id,
        filename=filename,
        content_length=content_length,
        token_hash=_token_hash(token),
        expires_at=_now() + UPLOAD_TTL,
    )
    session.add(row)
    session.flush()
    return row, token


def receive_upload(session: Session, upload_id: str, token: str, body: bytes) -> None:
    """Keep the PUT body of a booked upload (once, with the right token, of the booked size)."""
    row = session.get(GraphUpload, upload_id)
    if row is None or not hmac.compare_digest(row.token_hash, _token_hash(token)):
        raise NotFound("no such upload (or the token in the URL is wrong)", field="putRequestId")
    if row.expires_at < _now():
        raise NotFound("this upload URL has expired: ask /api/graph/signed-put for a new one", field="putRequestId")
    if row.gz is not None:
        raise Conflict("this upload URL was used already", field="putRequestId")
    if len(body) != row.content_length:
        raise Invalid(
            f"the body has {len(body)} bytes but signed-put was told contentLength {row.content_length}",
            field="contentLength",
        )
    row.gz = body


def _inflate(data: bytes, limit: int) -> bytes:
    """The upload's JSON bytes: gunzipped when gzip'd (by its magic bytes), at most ``limit`` bytes."""
    if data[:2] != b"\x1f\x8b":
        if len(data) > limit:
            raise TooLarge(f"the graph JSON is over {limit} bytes", field="file")
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise Invalid(f"the upload is not valid gzip: {exc}", field="file") from None
    if len(out) > limit:
        raise TooLarge(f"the graph JSON inflates to over {limit} bytes", field="file")
    if not inflater.eof:
        raise Invalid("the upload is a truncated gzip stream", field="file")
    return out


def finish_upload(session: Session, user: User, upload_id: str, how: GraphSave, max_json_bytes: int) -> GraphMetadata:
    """Turn a received upload into a stored graph (validated: nothing is stored when it is not a graph)."""
    row = session.get(GraphUpload, upload_id)
    if row is None or row.user_id != user.id:
        raise NotFound(f"no upload {upload_id!r} of yours", field="putRequestId")
    if row.gz is None:
        raise Invalid("nothing was uploaded yet: PUT the gzip'd JSON to the signed URL first", field="putRequestId")
    raw = _inflate(bytes(row.gz), max_json_bytes)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Invalid(f"the upload is not JSON: {exc}", field="file") from None
    graph = save_graph(session, doc, how, raw_json=raw)
    session.delete(row)
    session.flush()
    return graph


# --- subgraphs ------------------------------------------------------------------------------------


def _subgraph_lists(pinned: list[str], supernodes: list[list[str]], clerps: list[list[str]]) -> None:
    if len(pinned) > 10_000:
        raise Invalid("at most 10000 pinned nodes", field="pinnedIds")
    if any(len(group) < 2 for group in supernodes):
        raise Invalid("a supernode is [label, node id, ...] with at least a label and one node", field="supernodes")
    if any(len(pair) != 2 for pair in clerps):
        raise Invalid("a clerp is [node id, label]", field="clerps")


def save_subgraph(
    session: Session,
    user: User,
    model_id: str,
    slug: str,
    *,
    display_name: str,
    pinned_ids: list[str],
    supernodes: list[list[str]],
    clerps: list[list[str]],
    pruning_threshold: float | None,
    density_threshold: float | None,
    overwrite_id: str | None = None,
) -> tuple[GraphSubgraph, GraphMetadata]:
    """Save (or overwrite one of the user's own) subgraphs of a graph; returns it and its graph."""
    graph = get_graph(session, model_id, slug)
    _subgraph_lists(pinned_ids, supernodes, clerps)
    if overwrite_id:
        row = session.get(GraphSubgraph, overwrite_id)
        if row is None or row.graph_id != graph.id:
            raise NotFound(f"no subgraph {overwrite_id!r} of this graph", field="overwriteId")
        if row.user_id != user.id and not user.admin:
            raise Forbidden("that subgraph belongs to another user", field="overwriteId")
    else:
        row = GraphSubgraph(graph_id=graph.id, user_id=user.id)
        session.add(row)
    row.display_name = display_name
    row.pinned_ids, row.supernodes, row.clerps = list(pinned_ids), [list(g) for g in supernodes], clerps
    row.pruning_threshold, row.density_threshold = pruning_threshold, density_threshold
    session.flush()
    return row, graph


def list_subgraphs(
    session: Session, model_id: str, slug: str, *, featured_only: bool = False
) -> tuple[GraphMetadata, list[tuple[GraphSubgraph, str | None]]]:
    """A graph and its saved subgraphs (everyone's; featured first, then newest), with their authors' names."""
    graph = get_graph(session, model_id, slug)
    stmt = (
        select(GraphSubgraph, User.name)
        .outerjoin(User, User.id == GraphSubgraph.user_id)
        .where(GraphSubgraph.graph_id == graph.id)
    )
    if featured_only:
        stmt = stmt.where(GraphSubgraph.is_featured.is_(True))
    stmt = stmt.order_by(GraphSubgraph.is_featured.desc(), GraphSubgraph.created_at.desc())
    return graph, [(row, name) for row, name in session.execute(stmt)]


def delete_subgraph(session: Session, user: User, subgraph_id: str) -> None:
    """Delete one of the user's subgraphs (admins: any)."""
    row = session.get(GraphSubgraph, subgraph_id)
    if row is None:
        raise NotFound(f"no subgraph {subgraph_id!r}", field="subgraphId")
    if row.user_id != user.id and not user.admin:
        raise Forbidden("that subgraph belongs to another user", field="subgraphId")
    session.delete(row)
    session.flush()


def check_slug(slug: str) -> str:
    """A slug as graphs use it (letters, digits, '.', '_', '-'), or Invalid."""
    if not SLUG_RE.match(slug):
        raise Invalid("slug must be 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit", "slug")
    return slug

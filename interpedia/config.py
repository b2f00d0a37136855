"""The one Settings object: every knob is an ``INTERPEDIA_*`` environment variable."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Per-hour limits of neuronpedia.org's middleware for the routes it limits (reference/neuronpedia.md).
DEFAULT_RATE_LIMITS: dict[str, int] = {
    "/api/activation/new": 1000,
    "/api/explanation/search*": 200,
    "/api/explanation/score": 120,
    "/api/steer*": 240,
    "/api/search-topk-by-token": 500,
    "/api/search-all": 1600,
    "/api/graph/generate": 30,
    "/api/lens/prompt": 240,
    "/api/lens/share": 30,
    "/api/model/new": 5,
    "/api/nla/explain": 120,
    "/api/nla/completion": 240,
    # Ours, not neuronpedia.org's (it signs in through OAuth): password guessing and mass sign-up, per IP.
    "/signin/password": 300,
    "/signup": 100,
}

# What CSP frame-ancestors accepts as a source, without anything that could end the directive (; , quotes, spaces).
_ORIGIN_RE = re.compile(r"^(\*|https?://(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*(:\d{1,5})?/?)$")


class Settings(BaseSettings):
    """Runtime settings, read from the environment (prefix ``INTERPEDIA_``) or a settings file."""

    model_config = SettingsConfigDict(env_prefix="INTERPEDIA_", env_file=None, extra="ignore")

    home: Path = Field(default=Path("~/.interpedia"), description="Where the SQLite file, caches and demo live.")
    database_url: str = Field(default="", description="SQLAlchemy URL; empty means a SQLite file under home.")
    database_url_direct: str = Field(
        default="", description="Direct (non-pooled) Postgres URL for migrations; defaults to database_url."
    )
    env: str = Field(default="development", description="development or production.")
    session_secret: str = Field(default="", description="Signs session cookies; required in production.")
    session_max_age_days: int = Field(default=30, description="How long a web sign-in lasts.")
    max_body_bytes: int = Field(default=64 * 1024 * 1024, description="Largest accepted request body (413 above).")
    list_max_features: int = Field(default=1000, ge=1, description="Most features one list may hold.")
    import_batch_features: int = Field(default=256, description="Features per import transaction.")
    download_dir: Path | None = Field(
        default=None, description="Where `interpedia import s3://...` downloads files; empty: HOME/downloads."
    )
    keep_downloads: bool = Field(
        default=False, description="Keep downloaded files after they are imported (a local mirror of the bucket)."
    )
    download_ahead: int = Field(
        default=4, ge=1, description="Files downloaded at once, ahead of the importer (and at most left on disk)."
    )
    download_attempts: int = Field(
        default=4, ge=1, description="Tries per request and per file before a download is reported as failed."
    )
    download_timeout_s: float = Field(default=60.0, description="Seconds to connect, and between bytes, per request.")
    s3_endpoint_url: str = Field(
        default="", description="S3-compatible server for s3:// addresses (MinIO, R2 ...); empty: AWS."
    )
    s3_unsigned: bool = Field(
        default=True, description="Anonymous S3 requests (public buckets); false signs them with your AWS credentials."
    )
    public_base_url: str = Field(
        default="",
        description="Start of the absolute URLs in answers (lists, uploads, shares), e.g. https://interp.example.org; "
        "empty: taken from each request (its scheme and Host).",
    )
    default_creator: str = Field(default="bot", description="User that owns imported data.")
    secret: str = Field(default="", description="X-SECRET-KEY required on /v1 when set.")
    llm_base_url: str = Field(default="", description="OpenAI-compatible chat endpoint for autointerp.")
    llm_api_key: str = Field(default="", description="API key for the LLM endpoint.")
    llm_model: str = Field(default="", description="Model name sent to the LLM endpoint.")
    llm_timeout_s: float = Field(default=60.0, description="Seconds one LLM request may take.")
    llm_max_retries: int = Field(default=4, description="Retries on 429, 5xx, timeouts and connection errors.")
    llm_concurrency: int = Field(default=4, description="LLM requests in flight at once (per process).")
    embedding_base_url: str = Field(
        default="", description="OpenAI-compatible /embeddings endpoint; empty uses the local all-MiniLM-L6-v2."
    )
    embedding_api_key: str = Field(default="", description="API key for the embeddings endpoint.")
    embedding_model: str = Field(default="text-embedding-3-small", description="Model name for the endpoint.")
    embed_on_import: bool = Field(default=True, description="Embed new explanations as they are imported.")
    vector_ef_search: int = Field(default=100, description="pgvector hnsw.ef_search per search query.")
    vector_iterative_scan: str = Field(
        default="relaxed_order", description="pgvector hnsw.iterative_scan: off, relaxed_order or strict_order."
    )
    vector_hnsw_m: int = Field(default=16, description="HNSW m when `interpedia embed --reindex` builds.")
    vector_hnsw_ef_construction: int = Field(default=100, description="HNSW ef_construction for --reindex.")
    vector_maintenance_work_mem: str = Field(default="1GB", description="maintenance_work_mem for index builds.")
    inference_device: str = Field(default="cpu", description="Device live inference runs models on (cpu, cuda).")
    inference_dtype: str = Field(default="float32", description="Model dtype for live inference.")
    inference_torch_threads: int = Field(
        default=0, description="torch CPU threads for live inference (0: torch's default); 1 suits small models."
    )
    inference_models: dict[str, str] = Field(
        default_factory=dict,
        description="Model id -> weights (TransformerLens dir, HF dir or pretrained name), JSON; else found from "
        "generate runs or the model's tlens_id.",
    )
    inference_token_limit: int = Field(default=1024, description="Most tokens in one inference prompt (BOS included).")
    inference_tokenize_limit: int = Field(default=10000, description="Most tokens /v1/tokenize returns.")
    inference_max_models: int = Field(default=2, description="Models kept loaded for inference.")
    inference_max_saes: int = Field(default=32, description="SAEs kept loaded for inference.")
    inference_max_batch_prompts: int = Field(default=16, description="Most prompts in one -batch inference request.")
    inference_max_top_k: int = Field(default=100, description="Largest top_k of /v1/activation/topk-by-token.")
    inference_max_results: int = Field(default=1000, description="Largest num_results of /v1/activation/all.")
    inference_catalogue_ttl_s: float = Field(
        default=30.0, description="Seconds inference caches catalogue lookups (and the web its host map)."
    )
    inference_host_timeout_s: float = Field(
        default=120.0, description="Seconds a web server waits for an inference host's answer."
    )
    inference_host_connect_timeout_s: float = Field(
        default=5.0, description="Seconds a web server waits to connect to an inference host."
    )
    inference_host_retries: int = Field(
        default=2, description="Further tries (another host, or the same after a pause) when a host cannot be reached."
    )
    graph_host_timeout_s: float = Field(
        default=900.0, description="Seconds a web server waits for a graph host's graph."
    )
    steer_max_tokens: int = Field(default=256, description="Most tokens one steering request may generate.")
    steer_max_strength: float = Field(default=1000.0, description="Largest absolute steering strength accepted.")
    steer_presets: Path | None = Field(
        default=None,
        description="JSON file of steering presets per model id ({promptPresets, featurePresets, ...}), served by "
        "/api/steer/presets and offered on the steer page; none: a few general prompts.",
    )
    log_level: str = Field(default="INFO", description="Logging level.")
    rate_limit_enabled: bool = Field(default=True, description="Apply the per-route rate limits below.")
    rate_limits: dict[str, int] = Field(
        default_factory=lambda: dict(DEFAULT_RATE_LIMITS),
        description="Route (exact path, or prefix ending in *) -> requests per window per API key (or per IP "
        "without a key), JSON; the defaults are the routes and per-hour limits neuronpedia.org uses.",
    )
    rate_limit_window_s: float = Field(default=3600.0, description="The rate-limit window in seconds.")
    rate_limit_store: Literal["database", "memory"] = Field(
        default="database",
        description="Where rate-limit buckets are counted: database (shared by every process and server on the "
        "database) or memory (each process for itself).",
    )
    db_pool_size: int = Field(
        default=40,
        ge=1,
        description="Postgres connections each serving process keeps open: at least the requests it serves at once "
        "(its thread pool runs 40), or it opens and closes a connection per request beyond them.",
    )
    db_max_overflow: int = Field(
        default=10, ge=0, description="Connections a serving process may open for a moment beyond db_pool_size."
    )
    feature_cache_mb: int = Field(
        default=64, description="Memory per serving process for feature documents kept between requests (0: off)."
    )
    embedding_cache_size: int = Field(
        default=4096, description="Search queries whose embeddings each serving process keeps (0: none)."
    )
    embedding_threads: int = Field(
        default=1,
        description="Torch threads of the local embedding model (0: one per core); a query is too small to share.",
    )
    embedding_preload: bool = Field(
        default=True, description="`serve` loads the local embedding model in the background as it starts."
    )
    serve_workers: int = Field(default=1, description="Processes `interpedia serve` starts (`--workers`).")
    trust_forwarded_for: bool = Field(
        default=False,
        description="Trust your own proxy's X-Forwarded-For (the caller's IP), X-Forwarded-Proto and "
        "X-Forwarded-Host (the URLs in answers); only behind a proxy that sets them.",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser, JSON list; none: CORS off."
    )
    graph_max_upload_bytes: int = Field(
        default=200 * 1024 * 1024, description="Largest graph upload (the gzip'd body of its PUT), as upstream."
    )
    graph_max_json_bytes: int = Field(
        default=1024 * 1024 * 1024, description="Largest graph JSON an upload may inflate to (a gzip bomb stops there)."
    )
    graph_token_limit: int = Field(default=64, description="Most prompt tokens of a generated graph, as upstream.")
    frame_ancestors: str = Field(
        default="'self'", description="CSP frame-ancestors: who may embed pages in a frame ('none', 'self', URLs)."
    )
    embed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (https://blog.example, https://*.example.org, or * for any) allowed to frame the "
        "embed views (?embed=true of feature and graph pages), JSON list; other pages keep frame_ancestors.",
    )

    @field_validator("embed_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN_RE.match(origin):
                raise ValueError(
                    f"INTERPEDIA_EMBED_ORIGINS: {origin!r} is not an origin (scheme://host[:port], a *. host "
                    "wildcard, or *)"
                )
        return [o.rstrip("/") for o in value]

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.home = self.home.expanduser()
        self.download_dir = (self.download_dir or self.home / "downloads").expanduser()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.home / 'interpedia.db'}"
        if not self.database_url_direct:
            self.database_url_direct = self.database_url
        if self.env == "production" and not self.session_secret:
            raise ValueError("INTERPEDIA_SESSION_SECRET must be set when INTERPEDIA_ENV=production")
        return self

    @property
    def is_sqlite(self) -> bool:
        """True when the database is an SQLite file."""
        return self.database_url.startswith("sqlite")


SETTINGS_FILE = "settings.env"


def settings_file(home: Path) -> Path:
    """The settings file (``INTERPEDIA_*=value`` lines) that ``interpedia init`` writes: ``HOME/settings.env``."""
    return Path(home).expanduser() / SETTINGS_FILE


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings: environment first, then ``settings.env`` under home (cached; tests call
    ``get_settings.cache_clear()``)."""
    settings = Settings()
    path = settings_file(settings.home)
    if path.is_file():
        settings = Settings(_env_file=path)  # type: ignore[call-arg]  # environment variables still win
    return settings

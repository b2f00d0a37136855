"""The one Settings object: every knob is an ``INTERPEDIA_*`` environment variable."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    max_body_bytes: int = Field(default=64 * 1024 * 1024, description="Largest accepted request body (413 above).")
    import_batch_features: int = Field(default=256, description="Features per import transaction.")
    public_base_url: str = Field(default="http://127.0.0.1:8000", description="Used in share and list URLs.")
    default_creator: str = Field(default="bot", description="User that owns imported data.")
    secret: str = Field(default="", description="X-SECRET-KEY required on /v1 when set.")
    llm_base_url: str = Field(default="", description="OpenAI-compatible chat endpoint for autointerp.")
    llm_api_key: str = Field(default="", description="API key for the LLM endpoint.")
    llm_model: str = Field(default="", description="Model name sent to the LLM endpoint.")
    log_level: str = Field(default="INFO", description="Logging level.")

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.home = self.home.expanduser()
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings()

"""All settings, from CARENET_* environment variables (one class, injected, never read at import)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CARENET_", extra="ignore")

    # sqlite:///path (embedded default) or postgresql://user@host:5432/db
    database_url: str = "sqlite:///./carenet.db"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # The public base URL in links and Location headers; by default taken from each request.
    base_url: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    db_pool_size: int = 10
    statement_timeout_ms: int = 30_000
    migrate_on_start: bool = True
    log_level: str = "info"

"""All settings, from CARENET_* environment variables (one class, injected, never read at
import)."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from consent.trust import TrustedIssuer


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
    # Where bulk export ($export) jobs write their NDJSON files, one folder per job.
    export_dir: Path = Path("./exports")

    # SMART on FHIR authorisation server (api/oauth/, consent/). The issuer is the server
    # root: by default base_url without /fhir, or each request's own root.
    issuer: str | None = None
    access_token_seconds: int = 3600
    # The pages' sessions (web/): signed out after this long without a request, and this
    # long after signing in whatever happens (at most the access token's life).
    web_idle_seconds: int = 900
    web_session_seconds: int = 3600
    refresh_token_seconds: int = 30 * 86400
    auth_code_seconds: int = 60
    launch_seconds: int = 300
    # Sign in as any seeded Patient or Practitioner without a password, for trying the API.
    # None: on for the embedded SQLite database, off for PostgreSQL.
    demo_login: bool | None = None
    # Anyone may register a client at /oauth/register. None: the same as demo login.
    open_registration: bool | None = None
    # External OpenID Connect providers whose tokens are accepted (JSON list; see README).
    trusted_issuers: list[TrustedIssuer] = []

    def demo_login_enabled(self) -> bool:
        if self.demo_login is not None:
            return self.demo_login
        return self.database_url.startswith("sqlite")

    def registration_open(self) -> bool:
        if self.open_registration is not None:
            return self.open_registration
        return self.demo_login_enabled()

"""Rendering: one Jinja2 environment for every page set, and the headers every page carries."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"
STATIC_PATH = "/static/web"

# No inline script or style: the policy allows this server's own files only.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _date(value: str | None, with_time: bool = False) -> str:
    """A FHIR date or dateTime as people read it: 4 March 2026 (14:05)."""
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00")) if "T" in value else (
            datetime.fromisoformat(value + "-01" * (2 - value.count("-"))))
    except ValueError:
        return value
    text = f"{when.day} {when:%B %Y}"
    return f"{text}, {when:%H:%M}" if with_time and "T" in value else text


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["date"] = _date
    env.globals["static"] = STATIC_PATH
    return env


def headers(*, private: bool = True) -> dict[str, str]:
    out = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
    if private:
        out["Cache-Control"] = "no-store"
    return out


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = environment().get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status, headers=headers())


def see_other(url: str) -> RedirectResponse:
    """After a POST: the browser GETs the next page (Post/Redirect/Get)."""
    return RedirectResponse(url, status_code=303, headers=headers())

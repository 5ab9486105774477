"""The sign-in and consent page of /oauth/authorize: plain HTML, every value escaped."""

from __future__ import annotations

from html import escape

from fastapi.responses import HTMLResponse

from consent.authorize import AuthorizationRequest, describe
from consent.users import User

# The authorization request travels through the page and is checked again when it returns.
CARRIED = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud",
           "code_challenge", "code_challenge_method", "launch", "nonce")
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;"
          "padding:0 1rem}label{display:block;margin:1rem 0 .3rem}input{width:100%;"
          "padding:.4rem}button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}"
          ".problem{color:#a00}")


def render(request: AuthorizationRequest, params: dict[str, str], *, demo: bool,
           external: bool, staff: list[User], patients: list[User],
           problem: str | None = None, status: int = 200) -> HTMLResponse:
    """The page: who signs in, (for staff) which patient, and what the app will get."""
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(params[name])}">'
                     for name in CARRIED if name in params)
    wants = "".join(f"<li>{escape(line)}</li>" for line in describe(request))
    parts = [f"<h1>Sign in to carenet</h1><p><b>{escape(request.client.name)}</b> asks to:"
             f"</p><ul>{wants}</ul>"]
    if problem:
        parts.append(f'<p class="problem">{escape(problem)}</p>')
    parts.append(f'<form method="post" action="/oauth/authorize">{hidden}')
    if demo:
        preset = request.launch.user if request.launch else params.get("user", "")
        options = "".join(f'<option value="{escape(u.reference)}">{escape(_label(u))}</option>'
                          for u in (*staff, *patients))
        parts.append('<label for="user">Demo sign-in: a Practitioner or Patient reference'
                     f'</label><input id="user" name="user" list="users" '
                     f'value="{escape(preset)}" placeholder="Practitioner/... or Patient/...">'
                     f'<datalist id="users">{options}</datalist>')
    if external:
        parts.append('<label for="external_token">Or an id token from a trusted identity '
                     'provider</label><input id="external_token" name="external_token">')
    if not demo and not external:
        parts.append('<p class="problem">No way to sign in is configured (demo login is off '
                     'and no identity provider is trusted).</p>')
    if request.needs_patient():
        options = "".join(f'<option value="{escape(u.id)}">{escape(u.display)}</option>'
                          for u in patients)
        parts.append('<label for="patient">Patient (staff only; a patient opens their own '
                     'record)</label><input id="patient" name="patient" list="patients" '
                     f'value="{escape(params.get("patient", ""))}">'
                     f'<datalist id="patients">{options}</datalist>')
    parts.append('<button name="decision" value="approve">Allow</button>'
                 '<button name="decision" value="deny">Deny</button></form>')
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>carenet '
            f'sign-in</title><style>{_STYLE}</style></head><body>{"".join(parts)}'
            '</body></html>')
    return HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY",
        # No form-action: browsers apply it to the redirect back to the app.
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'none'"})


def _label(user: User) -> str:
    if user.kind == "patient":
        return f"{user.display} (patient)"
    role = next((r.text for r in user.roles if r.text), "staff")
    return f"{user.display} ({role})"

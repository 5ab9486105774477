"""The pages' back-end-for-front-end through the ASGI app: sign-in, cookie, CSRF, expiry,
and that the pages show only the signed-in person's record."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from tests.web.support import csrf_of, pages_client, sign_in
from web.sessions import web_session

pytestmark = pytest.mark.usefixtures("demo_login")


async def _count(app: Any, type_: str, patient: str) -> int:
    from fhir.schema import resource

    async with app.state.db.read() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(resource).where(
            resource.c.type == type_, resource.c.patient_id == patient))).scalar_one()


async def test_sign_in_sets_an_httponly_samesite_cookie_and_no_token_reaches_the_browser(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        r = await browser.get("/portal/record")
        assert r.status_code == 303 and r.headers["location"] == "/portal/start"
        await sign_in(browser, f"Patient/{people.ann}")
        cookie = next(h for h in browser.cookies.jar)
        assert cookie.name == "carenet_session"
        r = await browser.get("/portal/record")
        assert r.status_code == 200, r.text
        assert "Type 2 diabetes" in r.text and "Metformin 500 mg tablets" in r.text
        assert "Penicillin" in r.text and "Flu vaccine" in r.text and "Dr Gee" in r.text
        assert "<svg" in r.text and "HbA1c" in r.text
        assert r.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        async with app.state.db.read() as conn:
            data = (await conn.execute(sa.select(web_session.c.data))).scalars().all()
        tokens = [t for d in data for t in __import__("re").findall(r'"token":"([^"]+)"', d)]
        assert tokens, "the session store holds the tokens"
        for page in ("/portal/", "/portal/record", "/portal/messages", "/portal/care-plan"):
            html = (await browser.get(page)).text
            assert not any(t in html for t in tokens)
            assert "eyJ" not in html  # no JWT of any kind in the page
    # The cookie's flags, as the browser receives them.
    async with pages_client(app) as browser:
        r = await browser.get("/portal/sign-in")
        header = r.headers["set-cookie"].lower()
        assert "httponly" in header and "samesite=lax" in header and "path=/" in header
        assert "secure" not in header  # plain http on the loopback host


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_stores_nothing(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        await sign_in(browser, f"Patient/{people.ann}")
        before = await _count(app, "Communication", people.ann)
        for form in ({"message": "no token"}, {"message": "wrong", "csrf_token": "x" * 43}):
            r = await browser.post("/portal/messages", data=form)
            assert r.status_code == 403 and "Nothing was saved" in r.text
        page = await browser.get("/portal/messages")
        token = csrf_of(page.text)
        r = await browser.post("/portal/messages", data={"message": "from elsewhere",
                                                         "csrf_token": token},
                               headers={"Origin": "http://evil.example"})
        assert r.status_code == 403
        assert await _count(app, "Communication", people.ann) == before
        r = await browser.post("/portal/messages", data={"message": "Hello team",
                                                         "csrf_token": token})
        assert r.status_code == 303
        assert await _count(app, "Communication", people.ann) == before + 1


async def test_an_idle_or_too_old_session_ends_with_a_signed_out_page(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        await sign_in(browser, f"Patient/{people.ann}")
        async with app.state.db.write() as conn:  # as if 16 minutes had passed
            await conn.execute(web_session.update().values(
                seen_at=web_session.c.seen_at - 16 * 60))
        r = await browser.get("/portal/record")
        assert r.status_code == 303 and r.headers["location"] == "/portal/signed-out?why=idle"
        r = await browser.get(r.headers["location"])
        assert "signed out" in r.text and "15 minutes" in r.text
        r = await browser.get("/portal/record")  # and stays signed out
        assert r.headers["location"] == "/portal/start"
        await sign_in(browser, f"Patient/{people.ann}")
        async with app.state.db.write() as conn:  # signed in over an hour ago
            await conn.execute(web_session.update().values(
                created_at=web_session.c.created_at - 3601))
        r = await browser.get("/portal/")
        assert r.headers["location"] == "/portal/signed-out?why=absolute"


async def test_signing_out_revokes_the_token_and_ends_the_session(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        await sign_in(browser, f"Patient/{people.ann}")
        token = csrf_of((await browser.get("/portal/")).text)
        r = await browser.post("/portal/sign-out", data={"csrf_token": token})
        assert r.headers["location"] == "/portal/signed-out?why=you"
        assert (await browser.get("/portal/record")).headers["location"] == "/portal/start"


async def test_the_pages_take_the_patient_from_the_session_never_the_url(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        await sign_in(browser, f"Patient/{people.ann}")
        r = await browser.get(f"/portal/documents/{people.carl_doc}")
        assert r.status_code == 404 and "Carl was in hospital" not in r.text
        r = await browser.get(f"/portal/record?patient={people.carl}")
        assert "Type 2 diabetes" in r.text and "Salbutamol" not in r.text
        token = csrf_of(r.text)
        before = await _count(app, "Task", people.carl)
        r = await browser.post("/portal/repeats", data={"medicine": people.carl_medicine,
                                                        "csrf_token": token})
        assert r.status_code == 404
        assert await _count(app, "Task", people.carl) == before


async def test_the_session_id_changes_at_sign_in_and_a_forged_callback_signs_no_one_in(
        app: Any, people: SimpleNamespace) -> None:
    async with pages_client(app) as browser:
        r = await browser.get("/portal/sign-in")
        before = browser.cookies["carenet_session"]
        r = await browser.get("/portal/callback", params={"code": "stolen", "state": "guess"})
        assert r.status_code == 400 and "Start again" in r.text
        assert (await browser.get("/portal/record")).headers["location"] == "/portal/start"
        await sign_in(browser, f"Patient/{people.ann}")
        assert browser.cookies["carenet_session"] != before  # no session fixation


async def test_the_cookie_is_secure_when_the_server_is_served_over_https(
        app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.state.settings, "base_url", "https://127.0.0.1/fhir")
    async with pages_client(app) as browser:
        r = await browser.get("/portal/sign-in")
        assert r.headers["location"].startswith("https://127.0.0.1/oauth/authorize?")
        assert "; secure" in r.headers["set-cookie"].lower()


async def test_a_carer_signs_in_as_their_related_person_and_sees_only_the_grant(
        app: Any, people: SimpleNamespace, client: Any) -> None:
    async with pages_client(app) as browser:
        await sign_in(browser, f"RelatedPerson/{people.beth}", patient=people.ann)
        html = (await browser.get("/portal/record")).text
        assert "You are looking as their carer" in html
        assert "Type 2 diabetes" in html and "150/95 mmHg" in html  # Conditions, Observations
        assert "Metformin" not in html and "Penicillin" not in html  # outside the grant
        html = (await browser.get("/portal/access-log")).text
        assert "can see who looked at their record" in html
    # A carer whose RelatedPerson is no longer active cannot sign in at all.
    gone = await client.post("/RelatedPerson", json={
        "resourceType": "RelatedPerson", "active": False,
        "patient": {"reference": f"Patient/{people.ann}"}})
    async with pages_client(app) as browser:
        r = await browser.get("/portal/sign-in")
        from urllib.parse import parse_qsl, urlsplit

        from api.oauth.page import CARRIED

        params = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        form = {k: v for k, v in params.items() if k in CARRIED}
        r = await browser.post("/oauth/authorize", data={
            **form, "user": f"RelatedPerson/{gone.json()['id']}", "patient": people.ann,
            "decision": "approve"})
        assert r.status_code == 400 and "cannot sign in" in r.text

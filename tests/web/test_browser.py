"""The patient portal in a real browser: Debian's chromium driven by Playwright (no browser
download), against a real server (uvicorn, `python -m api serve`) on a free loopback port
with a small SQLite record. Screenshots of each page at desktop (1280) and phone (390)
widths go to tests/web/screenshots/ for review."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from consent.grants import operator_token
from fhir.db import Database
from tests.web.record import build

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(__file__).parent / "screenshots"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason="Debian's chromium is not installed (.ci/run installs it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _token(db_url: str, base: str, user: str | None = None) -> str:
    db = Database(db_url, pool_size=1)
    try:
        return await operator_token(db, fhir_base=base, client_id="carenet-test-suite",
                                    scope="user/*.cruds" if user else "system/*.cruds", user=user)
    finally:
        await db.dispose()


async def _seed(db_url: str, base: str) -> SimpleNamespace:
    system = await _token(db_url, base)
    async with httpx.AsyncClient(base_url=base, headers={
            "Authorization": f"Bearer {system}"}) as client:
        people = await build(client)
    # Who looked: Ann's own GP, and a GP elsewhere in an emergency (break-glass).
    own = await _token(db_url, base, f"Practitioner/{people.gp}")
    other = await _token(db_url, base, f"Practitioner/{people.other_gp}")
    async with httpx.AsyncClient(base_url=base) as client:
        r = await client.get(f"/Condition/{people.diabetes}",
                             headers={"Authorization": f"Bearer {own}"})
        assert r.status_code == 200, r.text
        r = await client.get(f"/Condition/{people.diabetes}", headers={
            "Authorization": f"Bearer {other}",
            "X-Break-Glass-Reason": "Unconscious in A&E, no other history available"})
        assert r.status_code == 200, r.text
    people.system = system
    return people


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimpleNamespace]:
    db_file = tmp_path_factory.mktemp("portal") / "carenet.db"
    port = _free_port()
    url, db_url = f"http://127.0.0.1:{port}", f"sqlite:///{db_file}"
    env = {**os.environ, "CARENET_DATABASE_URL": db_url, "CARENET_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "api", "serve", "--port", str(port)],
                            cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as probe:
            while True:
                try:
                    if (await probe.get(f"{url}/fhir/metadata", timeout=2)).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "no server"
                await asyncio.sleep(0.2)
        people = await _seed(db_url, f"{url}/fhir")
        yield SimpleNamespace(url=url, db_file=db_file, people=people)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM,
                                           args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        await browser.close()


@pytest.fixture
async def page(chromium: Any) -> AsyncIterator[Any]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(10_000)
    yield page
    await context.close()


async def see(page: Any, text: str, role: str | None = None) -> None:
    """Wait until the text (or the element of that role and name) shows."""
    from playwright.async_api import expect

    found = page.get_by_role(role, name=text) if role else page.get_by_text(text)
    await expect(found.first).to_be_visible()


async def absent(page: Any, text: str) -> None:
    assert await page.get_by_text(text).count() == 0, text


async def shot(page: Any, name: str) -> None:
    """The page at desktop and phone widths, whole length."""
    SHOTS.mkdir(exist_ok=True)
    for width in (1280, 390):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
    await page.set_viewport_size({"width": 1280, "height": 900})


async def sign_in(page: Any, server: SimpleNamespace, user: str, patient: str | None = None,
            start: bool = True) -> None:
    if start:
        await page.goto(f"{server.url}/portal/")
        assert page.url.endswith("/portal/start")
        await page.get_by_role("link", name="Sign in to your record").click()
    await page.fill("#user", user)
    if patient:
        await page.fill("#patient", patient)
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url(f"{server.url}/portal/")


async def api(server: SimpleNamespace, path: str, **params: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{server.url}/fhir/{path}", params=params,
                             headers={"Authorization": f"Bearer {server.people.system}"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", ())]


async def test_a_patient_signs_in_reads_results_adds_a_reading_sends_a_message_requests_a_repeat(
        page: Any, server: SimpleNamespace) -> None:
    p = server.people
    await page.goto(f"{server.url}/portal/")
    await shot(page, "01-start")
    await page.get_by_role("link", name="Sign in to your record").click()
    await shot(page, "01-sign-in-page")
    await sign_in(page, server, f"Patient/{p.ann}", start=False)
    await shot(page, "02-home")
    await see(page, f"Ann Able{p.tag}")

    await page.get_by_role("link", name="My record").first.click()
    for words in ("Type 2 diabetes", "Metformin 500 mg tablets", "Penicillin", "Flu vaccine",
                  "Diabetes clinic letter"):
        await see(page, words)
    assert await page.locator("figure svg").count() == 3  # blood pressure, weight, HbA1c
    await see(page, "HbA1c over time", "img")
    await see(page, "150/95 mmHg", "cell")
    await see(page, "Recorded by Dr Gee")
    await shot(page, "03-record")
    await page.get_by_role("link", name="Diabetes clinic letter").click()
    await see(page, "Your HbA1c is improving.")
    await shot(page, "04-document")

    await page.get_by_role("link", name="Add to my record").first.click()
    await page.fill("#systolic", "80")
    await page.fill("#diastolic", "120")
    await page.get_by_role("button", name="Add reading").click()
    await see(page, "The bottom number must be lower than the top number")
    await shot(page, "05-add-reading-error")
    await page.fill("#systolic", "128")
    await page.fill("#diastolic", "82")
    await page.get_by_role("button", name="Add reading").click()
    await see(page, "Your blood pressure reading was added")
    await shot(page, "06-add-reading")
    await page.get_by_role("link", name="How are you feeling?").click()
    await page.get_by_label("Good").check()
    await page.get_by_role("button", name="Send my answers").click()
    await see(page, "your answers were added")
    await page.goto(f"{server.url}/portal/record")
    await see(page, "128/82 mmHg", "cell")
    await see(page, "you", "cell")  # who wrote it
    reading = [o for o in await api(server, "Observation", patient=p.ann,
                                    code="http://loinc.org|85354-9")
               if o.get("performer") == [{"reference": f"Patient/{p.ann}"}]]
    assert len(reading) == 1 and reading[0]["meta"]["source"] == f"Patient/{p.ann}"
    answers = await api(server, "QuestionnaireResponse", patient=p.ann)
    assert answers[0]["item"][0]["answer"][0]["valueCoding"]["code"] == "good"

    await page.get_by_role("link", name="Messages").first.click()
    await see(page, "Yes, with food is best.")  # a reply, in its thread
    await page.fill("#message", "My feet have been tingling since Tuesday.")
    await page.get_by_role("button", name="Send message").click()
    await see(page, "Your message was sent to your care team.")
    await see(page, "Waiting for a reply")
    await shot(page, "07-messages")
    sent = [c for c in await api(server, "Communication", patient=p.ann)
            if "tingling" in c["payload"][0]["contentString"]]
    assert sent[0]["recipient"] == [{"reference": f"Organization/{p.org}"}]

    await page.get_by_role("link", name="Repeat prescriptions").first.click()
    await page.get_by_role("button", name="Request a repeat of Metformin 500 mg tablets").click()
    await see(page, "Your request for Metformin 500 mg tablets was sent")
    await see(page, "Sent to your practice", "cell")
    await see(page, "Requested: waiting for your practice")
    await shot(page, "08-repeats")
    asked = [c for c in await api(server, "Communication", patient=p.ann)
             if c.get("about") == [{"reference": f"MedicationRequest/{p.metformin}",
                                    "display": "Metformin 500 mg tablets"}]]
    assert len(asked) == 1 and asked[0]["recipient"] == [{"reference": f"Organization/{p.org}"}]
    assert asked[0]["category"][0]["coding"][0]["code"] == "repeat-prescription"

    await page.get_by_role("link", name="My care plan").first.click()
    await see(page, "Check blood sugar and call the surgery")
    await page.fill("#whatMatters", "Staying at home with my cat")
    await page.fill("#comment", "Please call my daughter Beth if I am unwell.")
    await page.get_by_role("button", name="Add to my plan").click()
    await see(page, "Added to your care plan.")
    await see(page, "Staying at home with my cat")
    await shot(page, "09-care-plan")

    await page.get_by_role("link", name="Appointments").first.click()
    await page.fill("#reason", "Diabetes review")
    await page.fill("#when", "Mornings")
    await page.get_by_role("button", name="Ask for an appointment").click()
    await see(page, "Requested: the practice will contact you")
    await shot(page, "10-appointments")

    await page.get_by_role("link", name="Who looked at my record").first.click()
    await see(page, "Emergency access")
    await see(page, "Unconscious in A&E")
    await see(page, "Dr Gee (Oak Surgery")
    await shot(page, "11-access-log")


async def test_a_carer_sees_only_what_is_granted_and_switches_between_records(
        page: Any, server: SimpleNamespace) -> None:
    p = server.people
    await sign_in(page, server, f"Patient/{p.beth_self}")  # Beth, as herself
    await page.goto(f"{server.url}/portal/record")
    await see(page, "Hay fever")
    await page.get_by_role("button", name="I care for someone").click()
    await sign_in(page, server, f"RelatedPerson/{p.beth}", patient=p.ann, start=False)
    await page.goto(f"{server.url}/portal/record")
    await see(page, "You are looking as their carer")
    await see(page, "Type 2 diabetes")  # Conditions: granted
    await see(page, "150/95 mmHg", "cell")  # Observations: granted
    for hidden in ("Metformin", "Penicillin", "Flu vaccine", "Diabetes clinic letter",
                   "Hay fever"):
        await absent(page, hidden)
    await shot(page, "12-carer-record")
    await page.goto(f"{server.url}/portal/documents/{p.letter}")  # not granted: as if unknown
    await see(page, "Page not found", "heading")
    await absent(page, "HbA1c is improving")
    await page.get_by_role("button", name="Switch to your own record").click()
    await page.goto(f"{server.url}/portal/record")
    await see(page, "Hay fever")
    await absent(page, "Type 2 diabetes")


async def test_a_patient_cannot_reach_another_patients_page_by_changing_the_url(
        page: Any, server: SimpleNamespace) -> None:
    p = server.people
    await sign_in(page, server, f"Patient/{p.ann}")
    response = await page.goto(f"{server.url}/portal/documents/{p.carl_doc}")
    assert response.status == 404
    await absent(page, "Carl was in hospital")
    await shot(page, "13-not-found")
    await page.goto(f"{server.url}/portal/record?patient={p.carl}")
    await see(page, "Type 2 diabetes")
    await absent(page, "Salbutamol")


async def test_a_forged_form_is_refused_and_an_idle_session_signs_out(
        page: Any, server: SimpleNamespace) -> None:
    p = server.people
    await sign_in(page, server, f"Patient/{p.ann}")
    await page.goto(f"{server.url}/portal/messages")
    before = len(await api(server, "Communication", patient=p.ann))
    await page.eval_on_selector("main form input[name=csrf_token]", "e => e.value = 'forged'")
    await page.fill("#message", "This must not be stored")
    await page.get_by_role("button", name="Send message").click()
    await see(page, "This form has expired", "heading")
    assert len(await api(server, "Communication", patient=p.ann)) == before
    await shot(page, "14-csrf-refused")
    with sqlite3.connect(server.db_file) as db:  # as if the person left for 16 minutes
        db.execute("UPDATE web_session SET seen_at = seen_at - 960")
    await page.goto(f"{server.url}/portal/record")
    await see(page, "You've been signed out", "heading")
    await see(page, "15 minutes")
    await shot(page, "15-signed-out")
    await page.goto(f"{server.url}/portal/record")
    assert page.url.endswith("/portal/start")

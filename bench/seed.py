"""Benchmark data: synthetic UK Patients, loaded through transaction Bundles over HTTP.

Plain standard library, so the harness needs nothing the project does not already have.
Names, NHS numbers (999 test range, valid Modulus 11) and addresses are made up and seeded,
so every run loads the same population.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
          "Green", "Hall", "Khan", "Lewis", "Harris", "Clarke", "Jackson", "Wood"]
GIVEN = {"female": ["Ann", "Margaret", "Susan", "Aisha", "Joan", "Mary", "Patricia", "Grace",
                    "Eileen", "Priya", "Dorothy", "Olivia"],
         "male": ["John", "David", "Peter", "Mohammed", "Robert", "James", "George", "Arthur",
                  "Michael", "Rajesh", "William", "Thomas"]}
STREETS = ["High Street", "Church Lane", "Station Road", "Mill Lane", "Victoria Road",
           "Park Avenue", "Green Lane", "Manor Road"]
TOWNS = [("Leeds", "LS"), ("Bradford", "BD"), ("Wakefield", "WF"), ("Harrogate", "HG"),
         ("Halifax", "HX"), ("Huddersfield", "HD")]


def nhs_numbers(start: int = 999_000_000) -> Iterator[str]:
    """Valid NHS numbers in the 999 test range: 9 digits plus the Modulus 11 check digit."""
    prefix = start
    while True:
        digits = f"{prefix:09d}"
        prefix += 1
        check = 11 - sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check == 10:
            continue  # no valid check digit for this prefix
        yield digits + str(0 if check == 11 else check)


def patient(rng: random.Random, nhs_number: str) -> dict[str, Any]:
    """A UK Core-shaped Patient of about 700 bytes."""
    gender = rng.choice(["female", "male"])
    town, area = rng.choice(TOWNS)
    born = f"{rng.randint(1925, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    return {
        "resourceType": "Patient",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "active": True,
        "name": [{"use": "official", "family": rng.choice(FAMILY),
                  "given": [rng.choice(GIVEN[gender])], "prefix": [rng.choice(["Mr", "Mrs",
                                                                              "Ms", "Dr"])]}],
        "telecom": [{"system": "phone", "value": f"0113 {rng.randint(100, 999)} "
                                                 f"{rng.randint(1000, 9999)}", "use": "home"}],
        "gender": gender,
        "birthDate": born,
        "address": [{"use": "home", "line": [f"{rng.randint(1, 200)} {rng.choice(STREETS)}"],
                     "city": town,
                     "postalCode": f"{area}{rng.randint(1, 29)} {rng.randint(1, 9)}"
                                   f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"
                                   f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}"}],
    }


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": r,
         "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]}


def post_json(url: str, body: Any, timeout: float, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:2000]


def seed_patients(base: str, count: int, *, bundle_size: int = 100, seed: int = 20261122,
                  deadline_s: float = 600.0, token: str | None = None) -> list[str]:
    """Create `count` Patients in transaction Bundles; returns their server-assigned ids."""
    rng = random.Random(seed)
    numbers = nhs_numbers()
    ids: list[str] = []
    stop_at = time.monotonic() + deadline_s
    while len(ids) < count:
        if time.monotonic() > stop_at:
            raise RuntimeError(f"seeding took longer than {deadline_s:.0f}s "
                               f"({len(ids)}/{count} Patients)")
        batch = [patient(rng, next(numbers)) for _ in range(min(bundle_size, count - len(ids)))]
        status, body = post_json(base, transaction(batch), timeout=120, token=token)
        if status != 200:
            raise RuntimeError(f"seed transaction answered {status}: {body}")
        for entry in body["entry"]:
            location = entry["response"]["location"]  # Patient/{id}/_history/1
            ids.append(location.split("/")[1])
    return ids

"""The network's directory: where services are, who runs them, when they can be booked.

For every organisation a `Location` with a `position` (the centroid of its postcode district,
`data/district-centroids.csv`); for every service of `data/directory-services.csv` an
`Organization` (when the network has none for it), a `HealthcareService`, the
`PractitionerRole`s of its staff (specialty, expertise, languages, availability) and, for the
bookable ones, a `Schedule` with `Slot`s for the coming weeks cut from the opening patterns of
`data/opening-patterns.csv`, some already busy. Sources: `data/SOURCES.md`.

Its own random stream (`directory/<seed>`), so the rest of the network is unchanged, and the
same seed and as-of date give the same records.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from api.synthetic.ids import drama_phone, resource_id
from api.synthetic.network import SDS_JOB_ROLE, Network, _org
from api.synthetic.people import FAMILY, GIVEN_YOUNGER
from api.synthetic.tables import DATA

SCT = "http://snomed.info/sct"
SERVICE_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/network-service"
STAFF_ROLE_SYSTEM = "https://carenet.invalid/fhir/CodeSystem/staff-role"
SELF_BOOKING = "https://carenet.invalid/fhir/StructureDefinition/self-booking"
BCP47 = "urn:ietf:bcp:47"
LONDON = ZoneInfo("Europe/London")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUSY_SHARE = 0.35  # share of generated slots already taken, so the demo shows both kinds
# Staff roles of the new services (SOURCES.md: no SDS job role code was verified for them).
ROLES = {"gp": (SDS_JOB_ROLE, "R0260", "General Medical Practitioner"),
         "physiotherapist": (STAFF_ROLE_SYSTEM, "physiotherapist", "Physiotherapist"),
         "link-worker": (STAFF_ROLE_SYSTEM, "social-prescribing-link-worker",
                         "Social prescribing link worker"),
         "pharmacist": (SDS_JOB_ROLE, "R1290", "Pharmacist")}


def _csv(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@cache
def centroids() -> dict[str, tuple[float, float]]:
    """Postcode district → (latitude, longitude)."""
    return {r["district"]: (float(r["latitude"]), float(r["longitude"]))
            for r in _csv("district-centroids.csv")}


@cache
def services() -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in _csv("directory-services.csv")}


@cache
def sessions() -> dict[str, list[tuple[tuple[str, ...], time, time]]]:
    """Service key → [(weekdays, start, end)] in UK local time."""
    out: dict[str, list[tuple[tuple[str, ...], time, time]]] = {}
    for r in _csv("opening-patterns.csv"):
        out.setdefault(r["service"], []).append(
            (tuple(r["days"].split()), time.fromisoformat(r["start"]),
             time.fromisoformat(r["end"])))
    return out


@cache
def languages() -> list[tuple[str, str, float]]:
    return [(r["code"], r["display"], float(r["share"])) for r in _csv("languages.csv")]


@dataclass(slots=True)
class Bookable:
    """One Schedule: the service, the role whose diary it is (if any), and its slots."""

    service: str  # key in directory-services.csv
    healthcare_service: str  # "HealthcareService/<id>"
    schedule: str  # "Schedule/<id>"
    organization: str
    location: str
    practitioner_role: str | None
    self_booking: bool
    slots: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Directory:
    locations: dict[str, str]  # Organization ref → Location ref
    bookable: list[Bookable]
    resources: list[dict[str, Any]]


def _codings(row: dict[str, str], prefix: str) -> list[dict[str, Any]]:
    code = row[f"{prefix}_sct"]
    display = row[f"{prefix}_sct_display"] if prefix == "type" else row[f"{prefix}_display"]
    return [{"system": SCT, "code": code, "display": display}] if code else []


def _type(row: dict[str, str]) -> list[dict[str, Any]]:
    coding = [{"system": SERVICE_SYSTEM, "code": row["type_code"], "display": row["type_display"]},
              *_codings(row, "type")]
    return [{"coding": coding, "text": row["type_display"]}]


def _specialty(row: dict[str, str]) -> list[dict[str, Any]]:
    out = [{"coding": c, "text": c[0]["display"]} for c in
           (_codings(row, "specialty"), _codings(row, "expertise")) if c]
    return out


def _available(key: str) -> list[dict[str, Any]]:
    return [{"daysOfWeek": list(days), "availableStartTime": start.isoformat(),
             "availableEndTime": end.isoformat()} for days, start, end in sessions()[key]]


def _district(org: dict[str, Any]) -> str:
    return org["address"][0]["postalCode"].split()[0]


def build_directory(network: Network, n_patients: int, as_of: date) -> Directory:
    """The directory of `network` (`n_patients` registered), with slots for the weeks after
    `as_of`."""
    seed = network.seed
    rng = random.Random(f"directory/{seed}")
    out: list[dict[str, Any]] = []
    by_ref = {f"{r['resourceType']}/{r['id']}": r for r in network.resources}
    orgs = [r for r in network.resources if r["resourceType"] == "Organization"]

    def new_org(key: str, name: str, code: str, display: str, text: str,
                part_of: str | None) -> str:
        org = _org(seed, f"directory/{key}", ods=f"X9S{len(out) % 100:02d}", name=name,
                   type_code=code, type_display=display, text=text, rng=rng, part_of=part_of)
        out.append(org)
        orgs.append(org)
        by_ref[f"Organization/{org['id']}"] = org
        return f"Organization/{org['id']}"

    first = network.practices[0]
    frailty_org = new_org("frailty-clinic", f"Frailty Clinic at {first.name}", "dept",
                          "Hospital Department", "Network frailty clinic", first.ref)
    by_ref[frailty_org]["address"] = by_ref[first.ref]["address"]  # in the practice's building
    physio_org = new_org("physiotherapy", "Northbridge Community Physiotherapy", "team",
                         "Organizational team", "Community physiotherapy team", None)
    social_org = new_org("social-prescribing", "Northbridge Social Prescribing Service", "team",
                         "Organizational team", "Social prescribing link workers",
                         network.network)
    # a Location for every organisation, at the centroid of its postcode district
    locations: dict[str, str] = {}
    for org in orgs:
        lat, lon = centroids()[_district(org)]
        loc_id = resource_id(seed, "location", org["id"])
        out.append({"resourceType": "Location", "id": loc_id, "status": "active",
                    "mode": "instance", "name": org["name"], "telecom": org["telecom"],
                    "address": {k: v for k, v in org["address"][0].items() if k != "use"},
                    "position": {"longitude": lon, "latitude": lat},
                    "managingOrganization": {"reference": f"Organization/{org['id']}",
                                             "display": org["name"]}})
        locations[f"Organization/{org['id']}"] = f"Location/{loc_id}"
    # languages of every member of staff
    for resource in network.resources:
        if resource["resourceType"] == "Practitioner":
            _speaks(resource, rng)

    bookable: list[Bookable] = []

    def service(key: str, provider: str, n: int, roles: list[str]) -> str:
        row = services()[key]
        hs_id = resource_id(seed, "healthcare-service", key, n)
        org = by_ref[provider]
        hs = {"resourceType": "HealthcareService", "id": hs_id, "active": True,
              "extension": [{"url": SELF_BOOKING, "valueBoolean": row["self_booking"] == "true"}],
              "providedBy": {"reference": provider, "display": org["name"]},
              "type": _type(row), "specialty": _specialty(row),
              "location": [{"reference": locations[provider]}],
              "name": row["name"] if key != "gp-appointment" else f"GP appointments, {org['name']}",
              "telecom": org["telecom"], "appointmentRequired": True,
              "availableTime": _available(key)}
        if not hs["specialty"]:
            del hs["specialty"]
        out.append(hs)
        ref = f"HealthcareService/{hs_id}"
        for role in roles or [None]:
            bookable.append(_schedule(seed, rng, as_of, key, ref, provider, locations[provider],
                                      role, out))
        return ref

    for i, practice in enumerate(network.practices):
        hs = service("gp-appointment", practice.ref, i, [])
        for staff in (*practice.gps, *practice.nurses):
            _attach(by_ref[staff.practitioner_role], locations[practice.ref], hs, "gp-appointment",
                    None)
    for i, pharmacy in enumerate(network.pharmacies):
        pharmacists = [s for s in network.staff["pharmacist"] if s.organization == pharmacy]
        hs = service("medication-review", pharmacy, i, [s.practitioner_role for s in pharmacists])
        for staff in pharmacists:
            _attach(by_ref[staff.practitioner_role], locations[pharmacy], hs, "medication-review",
                    services()["medication-review"])

    def staff(key: str, provider: str, role: str, count: int) -> list[str]:
        return [_new_staff(seed, rng, key, n, role, provider, locations[provider],
                           services()[key], out) for n in range(count)]

    frailty = staff("frailty-clinic", frailty_org, "gp", 1)
    service("frailty-clinic", frailty_org, 0, frailty)
    physios = staff("community-physiotherapy", physio_org, "physiotherapist",
                    max(2, round(n_patients / 12_500)))
    service("community-physiotherapy", physio_org, 0, physios)
    parkinsons = staff("parkinsons-physiotherapy", physio_org, "physiotherapist", 1)
    service("parkinsons-physiotherapy", physio_org, 0, parkinsons)
    workers = staff("social-prescribing", social_org, "link-worker",
                    max(1, round(n_patients / 10_000)))
    service("social-prescribing", social_org, 0, workers)
    # every new role names its service (the HealthcareService ids are known only now)
    by_ref.update({f"{r['resourceType']}/{r['id']}": r for r in out})
    for b in bookable:
        if b.practitioner_role and b.practitioner_role in by_ref:
            role = by_ref[b.practitioner_role]
            role["healthcareService"] = [{"reference": b.healthcare_service}]
    return Directory(locations, bookable, out)


def _speaks(practitioner: dict[str, Any], rng: random.Random) -> None:
    spoken = [(c, d) for c, d, share in languages() if share >= 1 or rng.random() < share]
    practitioner["communication"] = [{"coding": [{"system": BCP47, "code": c, "display": d}],
                                      "text": d} for c, d in spoken]


def _attach(role: dict[str, Any], location: str, hs: str, key: str,
            row: dict[str, str] | None) -> None:
    """An existing member of staff works at `location` for service `hs`."""
    role["location"] = [{"reference": location}]
    role["healthcareService"] = [{"reference": hs}]
    role["availableTime"] = _available(key)
    if row is not None and _specialty(row):
        role["specialty"] = _specialty(row)


def _new_staff(seed: int, rng: random.Random, key: str, n: int, role: str, org: str,
               location: str, row: dict[str, str], out: list[dict[str, Any]]) -> str:
    sex = rng.choice(("female", "male"))
    family, given = rng.choice(FAMILY), rng.choice(GIVEN_YOUNGER[sex])
    prac_id = resource_id(seed, "practitioner", "directory", key, n)
    role_id = resource_id(seed, "practitioner-role", "directory", key, n)
    name: dict[str, Any] = {"use": "official", "family": family, "given": [given]}
    if role == "gp":
        name["prefix"] = ["Dr"]
    practitioner = {"resourceType": "Practitioner", "id": prac_id, "active": True,
                    "identifier": [{"system": "https://fhir.nhs.uk/Id/sds-user-id",
                                    "value": f"{rng.randrange(10**11, 10**12)}"}],
                    "name": [name], "gender": sex}
    _speaks(practitioner, rng)
    system, code, display = ROLES[role]
    out.append(practitioner)
    out.append({"resourceType": "PractitionerRole", "id": role_id, "active": True,
                "practitioner": {"reference": f"Practitioner/{prac_id}",
                                 "display": f"{'Dr ' if role == 'gp' else ''}{given} {family}"},
                "organization": {"reference": org},
                "code": [{"coding": [{"system": system, "code": code, "display": display}],
                          "text": display}],
                **({"specialty": _specialty(row)} if _specialty(row) else {}),
                "location": [{"reference": location}],
                "telecom": [{"system": "phone", "value": drama_phone(rng), "use": "work"}],
                "availableTime": _available(key)})
    return f"PractitionerRole/{role_id}"


def _schedule(seed: int, rng: random.Random, as_of: date, key: str, hs: str, org: str,
              location: str, role: str | None, out: list[dict[str, Any]]) -> Bookable:
    row = services()[key]
    sched_id = resource_id(seed, "schedule", hs, role or "-")
    start = as_of + timedelta(days=1)
    weeks = int(row["weeks"])
    actors = [{"reference": hs}, {"reference": location}]
    if role:
        actors.insert(1, {"reference": role})
    schedule = {"resourceType": "Schedule", "id": sched_id, "active": True,
                "serviceType": _type(row), "actor": actors,
                "planningHorizon": {"start": start.isoformat(),
                                    "end": (start + timedelta(weeks=weeks)).isoformat()},
                "comment": row["name"]}
    if _specialty(row):
        schedule["specialty"] = _specialty(row)
    out.append(schedule)
    b = Bookable(key, hs, f"Schedule/{sched_id}", org, location, role,
                 row["self_booking"] == "true")
    minutes = timedelta(minutes=int(row["slot_minutes"]))
    for day in range(7 * weeks):
        when = start + timedelta(days=day)
        for days, open_, close in sessions()[key]:
            if DAYS[when.weekday()] not in days:
                continue
            at = datetime.combine(when, open_, LONDON)
            end = datetime.combine(when, close, LONDON)
            while at + minutes <= end:
                slot_id = resource_id(seed, "slot", sched_id, at.isoformat())
                out.append({"resourceType": "Slot", "id": slot_id,
                            "schedule": {"reference": f"Schedule/{sched_id}"},
                            "serviceType": _type(row),
                            **({"specialty": _specialty(row)} if _specialty(row) else {}),
                            "status": "busy" if rng.random() < BUSY_SHARE else "free",
                            "start": at.isoformat(), "end": (at + minutes).isoformat()})
                b.slots.append(f"Slot/{slot_id}")
                at += minutes
    return b

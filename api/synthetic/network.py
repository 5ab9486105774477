"""The organisations and staff of a family care network.

GP practices (about one per 8,000 registered patients, at least three), a community nursing
team, community pharmacies (about one per 5,000 people), the local authority's adult social
care, the acute hospital and the network itself; Practitioners with a PractitionerRole each,
coded with an SDS job role (`data/staff-roles.csv`). ODS-style codes are invented.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from api.synthetic.ids import drama_phone, resource_id
from api.synthetic.people import FAMILY, GIVEN_YOUNGER, TOWNS, address
from api.synthetic.portal import questionnaire
from api.synthetic.tables import staff_roles

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
SDS_JOB_ROLE = "https://fhir.nhs.uk/CodeSystem/England-SDS-JobRoleCode"
SDS_USER_ID = "https://fhir.nhs.uk/Id/sds-user-id"
# UK Core professional register identifiers.
REGISTERS = {"gp": "https://fhir.hl7.org.uk/Id/gmc-number",
             "practice-nurse": "https://fhir.hl7.org.uk/Id/nmc-number",
             "community-nurse": "https://fhir.hl7.org.uk/Id/nmc-number",
             "case-manager": "https://fhir.hl7.org.uk/Id/nmc-number",
             "pharmacist": "https://fhir.hl7.org.uk/Id/gphc-number"}
ROLE_TEXT = {"gp": "General practitioner", "practice-nurse": "Practice nurse",
             "community-nurse": "Community nurse", "pharmacist": "Community pharmacist",
             "social-worker": "Social worker (adults)", "case-manager": "Network case manager"}
PATIENTS_PER_PRACTICE = 8_000
PATIENTS_PER_PHARMACY = 5_000


@dataclass(slots=True)
class Staff:
    """One member of staff: the Practitioner, their PractitionerRole and employer."""

    role: str
    practitioner: str  # "Practitioner/<id>"
    practitioner_role: str  # "PractitionerRole/<id>"
    organization: str  # "Organization/<id>"
    name: str


@dataclass(slots=True)
class Practice:
    ref: str
    ods: str
    name: str
    weight: float
    gps: list[Staff] = field(default_factory=list)
    nurses: list[Staff] = field(default_factory=list)


@dataclass(slots=True)
class Network:
    """Everything a patient record refers to outside itself, and the resources that make it."""

    seed: int
    network: str
    practices: list[Practice]
    community_nursing: str
    pharmacies: list[str]
    social_care: str
    hospital: str
    staff: dict[str, list[Staff]]
    resources: list[dict[str, Any]]
    cumulative: list[float]
    directory: Any = None  # api.synthetic.directory.Directory, once generate() adds it

    def practice_for(self, rng: random.Random) -> Practice:
        x = rng.random() * self.cumulative[-1]
        for practice, edge in zip(self.practices, self.cumulative, strict=True):
            if x < edge:
                return practice
        return self.practices[-1]


def _org(seed: int, key: str, *, ods: str, name: str, type_code: str, type_display: str,
         text: str, rng: random.Random, part_of: str | None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization", "id": resource_id(seed, "org", key),
        "identifier": [{"system": ODS_SYSTEM, "value": ods}], "active": True,
        "type": [{"coding": [{"system": ORG_TYPE, "code": type_code,
                              "display": type_display}], "text": text}],
        "name": name,
        "telecom": [{"system": "phone", "value": drama_phone(rng), "use": "work"}],
        "address": [{**address(rng), "use": "work"}],
    }
    if part_of:
        org["partOf"] = {"reference": part_of}
    return org


def _person(seed: int, role: str, n: int, org_ref: str, rng: random.Random,
            resources: list[dict[str, Any]]) -> Staff:
    sex = rng.choice(("female", "male"))
    family, given = rng.choice(FAMILY), rng.choice(GIVEN_YOUNGER[sex])
    prac_id = resource_id(seed, "practitioner", role, n)
    role_id = resource_id(seed, "practitioner-role", role, n)
    identifiers = [{"system": SDS_USER_ID, "value": f"{rng.randrange(10**11, 10**12)}"}]
    if role in ("gp", "pharmacist"):  # GMC and GPhC numbers: seven digits
        identifiers.append({"system": REGISTERS[role], "value": f"{rng.randrange(10**6, 10**7)}"})
    elif role in REGISTERS:  # NMC PIN: 2 digits, a letter, 4 digits, a letter
        identifiers.append({"system": REGISTERS[role], "value": f"{rng.randrange(10, 99)}"
                            f"{rng.choice('ABCDEFGHJKLMNPRSTUVWXYZ')}{rng.randrange(1000, 9999)}E"})
    name = {"use": "official", "family": family, "given": [given]}
    if role == "gp":
        name["prefix"] = ["Dr"]
    resources.append({"resourceType": "Practitioner", "id": prac_id, "identifier": identifiers,
                      "active": True, "name": [name], "gender": sex})
    code, display = staff_roles()[role]
    resources.append({
        "resourceType": "PractitionerRole", "id": role_id, "active": True,
        "practitioner": {"reference": f"Practitioner/{prac_id}"},
        "organization": {"reference": org_ref},
        "code": [{"coding": [{"system": SDS_JOB_ROLE, "code": code, "display": display}],
                  "text": ROLE_TEXT[role]}],
        "telecom": [{"system": "phone", "value": drama_phone(rng), "use": "work"}],
    })
    shown = f"{'Dr ' if role == 'gp' else ''}{given} {family}"
    return Staff(role, f"Practitioner/{prac_id}", f"PractitionerRole/{role_id}", org_ref, shown)


def build_network(seed: int, n_patients: int) -> Network:
    """The organisations and staff for a network of `n_patients` registered patients."""
    rng = random.Random(f"network/{seed}")
    resources: list[dict[str, Any]] = []

    def org(key: str, **kw: Any) -> str:
        resource = _org(seed, key, rng=rng, **kw)
        resources.append(resource)
        return f"Organization/{resource['id']}"

    network_ref = org("network", ods="X9N01", name="Northbridge Family Care Network",
                      type_code="prov", type_display="Healthcare Provider",
                      text="Primary care network", part_of=None)
    n_practices = max(3, round(n_patients / PATIENTS_PER_PRACTICE))
    practices = []
    towns = sorted({t for t, _ in TOWNS})
    for i in range(n_practices):
        town = towns[i % len(towns)]
        suffix = ("Medical Centre", "Surgery", "Health Centre", "Family Practice")[i % 4]
        ods = f"X99{i + 1:03d}"
        ref = org(f"practice/{i}", ods=ods, name=f"{town} {suffix}", type_code="prov",
                  type_display="Healthcare Provider", text="GP practice", part_of=network_ref)
        practices.append(Practice(ref, ods, f"{town} {suffix}", rng.uniform(0.7, 1.3)))
    community_nursing = org("community-nursing", ods="X9C01",
                            name="Northbridge Community Nursing Team", type_code="team",
                            type_display="Organizational team", text="Community nursing team",
                            part_of=None)
    pharmacies = [org(f"pharmacy/{i}", ods=f"FX9{i + 1:02d}",
                      name=f"{towns[i % len(towns)]} Pharmacy", type_code="prov",
                      type_display="Healthcare Provider", text="Community pharmacy",
                      part_of=None)
                  for i in range(max(2, round(n_patients / PATIENTS_PER_PHARMACY)))]
    social_care = org("social-care", ods="X9L01", name="Northbridge Council Adult Social Care",
                      type_code="govt", type_display="Government",
                      text="Local authority adult social care", part_of=None)
    hospital = org("hospital", ods="X9H", name="Northbridge General Hospital",
                   type_code="prov", type_display="Healthcare Provider",
                   text="Acute hospital trust", part_of=None)

    staff: dict[str, list[Staff]] = {role: [] for role in ROLE_TEXT}
    for practice in practices:
        share = n_patients * practice.weight / sum(p.weight for p in practices)
        # About one GP per 2,000 patients and one practice nurse per 4,000 (NHS Digital
        # General Practice Workforce, England), at least two and one per practice.
        for _ in range(max(2, round(share / 2_000))):
            practice.gps.append(_person(seed, "gp", len(staff["gp"]), practice.ref, rng,
                                        resources))
            staff["gp"].append(practice.gps[-1])
        for _ in range(max(1, round(share / 4_000))):
            practice.nurses.append(_person(seed, "practice-nurse", len(staff["practice-nurse"]),
                                           practice.ref, rng, resources))
            staff["practice-nurse"].append(practice.nurses[-1])
    for role, org_refs, per in (("community-nurse", [community_nursing], 5_000),
                                ("pharmacist", pharmacies, None),
                                ("social-worker", [social_care], 10_000),
                                ("case-manager", [network_ref], 8_000)):
        count = len(org_refs) if per is None else max(2, round(n_patients / per))
        for n in range(count):
            staff[role].append(_person(seed, role, n, org_refs[n % len(org_refs)], rng,
                                       resources))
    resources.append(questionnaire(seed))  # for the portal's "answers to a questionnaire"
    cumulative, total = [], 0.0
    for practice in practices:
        total += practice.weight
        cumulative.append(total)
    return Network(seed, network_ref, practices, community_nursing, pharmacies, social_care,
                   hospital, staff, resources, cumulative)

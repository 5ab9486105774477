"""Assemble the network: the organisations bundle, then one record per patient, as
transaction Bundles (PUT with fixed ids, so loading twice changes nothing but versions) or
NDJSON files (one per resource type, as FHIR Bulk Data writes them).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from api.synthetic import care, clinical, encounters, planning
from api.synthetic.directory import build_directory
from api.synthetic.ids import nhs_numbers
from api.synthetic.network import Network, build_network
from api.synthetic.people import address, birth_date, patient
from api.synthetic.record import Record
from api.synthetic.tables import population

Resource = dict[str, Any]


def patient_record(network: Network, *, index: int, nhs_number: str, as_of: date) -> Record:
    """Patient `index` of the network and everything in their record."""
    seed = network.seed
    rng = random.Random(f"patient/{seed}/{index}")
    age, sex = population().sample(rng)
    born = birth_date(rng, age, as_of)
    rec = Record.start(seed=seed, index=index, as_of=as_of, network=network, age=age, sex=sex,
                       born=born, rng=rng)
    rec.patient_ref = rec.add(patient(
        rng=rng, nhs_number=nhs_number, sex=sex, born=born, practice_ref=rec.practice.ref,
        gp_ref=rec.gp.practitioner, home=address(rng)))
    clinical.conditions(rec)
    clinical.measurements(rec)
    care.medicines_for(rec)
    clinical.frailty(rec)
    planning.carers(rec)
    care.allergies(rec)
    care.immunisations(rec)
    encounters.encounters(rec)
    encounters.appointments(rec)
    planning.care_plans(rec)
    planning.patient_entered(rec)
    return rec


def patient_records(network: Network, n_patients: int, as_of: date, *,
                    start: int = 0) -> Iterator[Record]:
    """Records of patients `start` .. `n_patients - 1`, in order."""
    numbers = itertools.islice(nhs_numbers(network.seed), start, n_patients)
    for index, number in enumerate(numbers, start):
        yield patient_record(network, index=index, nhs_number=number, as_of=as_of)


def generate(seed: int, n_patients: int, as_of: date) -> tuple[Network, Iterator[Record]]:
    """The network's organisations and staff, and a lazy stream of its patients' records."""
    network = build_network(seed, n_patients)
    network.directory = build_directory(network, n_patients, as_of)
    network.resources.extend(network.directory.resources)
    return network, patient_records(network, n_patients, as_of)


def transaction(resources: list[Resource]) -> Resource:
    """A transaction Bundle that PUTs each resource at its fixed id
    (https://hl7.org/fhir/R4/http.html#transaction)."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": r,
         "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]}


def write_ndjson(out: Path, network: Network, records: Iterator[Record]) -> dict[str, int]:
    """Write `<Type>.ndjson` files under `out`; return the count per resource type."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    counts: dict[str, int] = {}
    try:
        for resources in itertools.chain([network.resources], (r.resources for r in records)):
            for resource in resources:
                type_ = resource["resourceType"]
                if type_ not in files:
                    files[type_] = (out / f"{type_}.ndjson").open("wb")
                files[type_].write(orjson.dumps(resource) + b"\n")
                counts[type_] = counts.get(type_, 0) + 1
    finally:
        for f in files.values():
            f.close()
    return counts

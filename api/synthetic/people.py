"""People: names, addresses, Patients and their carers (RelatedPerson).

Names, streets and towns are made up; the postcode area `NB` is not a real one; telephone
numbers come from Ofcom's drama ranges (see `ids.drama_phone`).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any

from api.synthetic.ids import drama_phone

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
UK_CORE_PATIENT = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"

FAMILY = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall",
    "Khan", "Lewis", "Harris", "Clarke", "Jackson", "Wood", "Turner", "Hill", "Moore", "Cooper",
    "Ward", "Hussain", "Ahmed", "King", "Baker", "Begum", "Shah", "Ali", "Morris", "Okafor",
    "Kowalski", "Nowak", "Mensah", "Singh", "Kaur", "Murphy", "Kelly", "Campbell", "Hughes",
    "Edwards", "Parker", "Bennett", "Chapman", "Mitchell", "Fletcher", "Lloyd", "Barker",
)
GIVEN_OLDER = {
    "female": ("Margaret", "Joan", "Patricia", "Dorothy", "Eileen", "Jean", "Barbara", "Brenda",
               "Sheila", "Maureen", "Irene", "Pauline", "Shirley", "Valerie", "Edna", "Doreen",
               "Gurpreet", "Shamim", "Mary", "Ann"),
    "male": ("John", "David", "Peter", "Robert", "James", "George", "Arthur", "Michael",
             "William", "Brian", "Kenneth", "Derek", "Roy", "Colin", "Dennis", "Raymond",
             "Mohammed", "Harbans", "Stanley", "Frank"),
}
GIVEN_YOUNGER = {
    "female": ("Olivia", "Amelia", "Isla", "Ava", "Sophie", "Grace", "Emily", "Aisha", "Priya",
               "Hannah", "Chloe", "Zara", "Lucy", "Jessica", "Sarah", "Emma", "Fatima",
               "Maya", "Ella", "Leah"),
    "male": ("Oliver", "George", "Harry", "Noah", "Jack", "Leo", "Muhammad", "Thomas", "Daniel",
             "Adam", "Samuel", "Ryan", "Joshua", "Luke", "Ben", "Arjun", "Kian", "Ethan",
             "Liam", "Yusuf"),
}
STREETS = ("High Street", "Church Lane", "Station Road", "Mill Lane", "Victoria Road",
           "Park Avenue", "Green Lane", "Manor Road", "School Lane", "Queens Road",
           "The Crescent", "Orchard Close", "Beech Grove", "Westfield Drive", "Riverside Walk")
# (town, postcode district) in the fictional area NB.
TOWNS = (("Northbridge", "NB1"), ("Northbridge", "NB2"), ("Northbridge", "NB3"),
         ("Elmsford", "NB7"), ("Castle Hatton", "NB9"), ("Ashby Moor", "NB12"),
         ("Wickham Vale", "NB14"))
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward part of UK postcodes


def given_name(rng: random.Random, sex: str, birth_year: int) -> str:
    names = GIVEN_OLDER if birth_year < 1965 else GIVEN_YOUNGER
    return rng.choice(names[sex])


def address(rng: random.Random, town: tuple[str, str] | None = None) -> dict[str, Any]:
    city, district = town or rng.choice(TOWNS)
    return {"use": "home", "line": [f"{rng.randint(1, 180)} {rng.choice(STREETS)}"],
            "city": city, "postalCode": f"{district} {rng.randint(1, 9)}"
            f"{rng.choice(_UNIT_LETTERS)}{rng.choice(_UNIT_LETTERS)}", "country": "GB"}


def birth_date(rng: random.Random, age: int, as_of: date) -> date:
    """A birth date that makes the person exactly `age` on `as_of`."""
    day = 28 if (as_of.month, as_of.day) == (2, 29) else as_of.day
    latest = as_of.replace(year=as_of.year - age, day=day)
    return latest - timedelta(days=rng.randrange(365))


def patient(*, rng: random.Random, nhs_number: str, sex: str, born: date,
            practice_ref: str, gp_ref: str, home: dict[str, Any]) -> dict[str, Any]:
    """A UK Core-shaped Patient registered with a practice (generalPractitioner)."""
    family = rng.choice(FAMILY)
    given = [given_name(rng, sex, born.year)]
    if rng.random() < 0.4:
        given.append(given_name(rng, sex, born.year))
    name: dict[str, Any] = {"use": "official", "family": family, "given": given}
    return {
        "resourceType": "Patient",
        "meta": {"profile": [UK_CORE_PATIENT]},
        "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": nhs_number}],
        "active": True,
        "name": [name],
        "telecom": [{"system": "phone", "value": drama_phone(rng, mobile=rng.random() < 0.6),
                     "use": "home"}],
        "gender": sex,
        "birthDate": born.isoformat(),
        "address": [home],
        "generalPractitioner": [{"reference": practice_ref}, {"reference": gp_ref}],
        "managingOrganization": {"reference": practice_ref},
    }


CARER_RELATIONS = (("DAU", "daughter"), ("SON", "son"), ("SPS", "spouse"), ("NBOR", "neighbor"),
                   ("FRND", "friend"))


def carer(*, rng: random.Random, patient_ref: str, patient_resource: dict[str, Any],
          spouse_possible: bool) -> dict[str, Any]:
    """A RelatedPerson who cares for the patient (an unpaid carer)."""
    choices = CARER_RELATIONS if spouse_possible else CARER_RELATIONS[:2] + CARER_RELATIONS[3:]
    code, display = rng.choices(choices, weights=[3, 2, 4, 1, 1][: len(choices)])[0]
    sex = {"DAU": "female", "SON": "male"}.get(code) or rng.choice(("female", "male"))
    family = patient_resource["name"][0]["family"] if code in ("DAU", "SON", "SPS") \
        else rng.choice(FAMILY)
    born_year = int(patient_resource["birthDate"][:4]) + (28 if code in ("DAU", "SON") else 0)
    home = patient_resource["address"][0] if code == "SPS" else address(rng)
    return {
        "resourceType": "RelatedPerson", "active": True,
        "patient": {"reference": patient_ref},
        "relationship": [
            {"coding": [{"system": ROLE_CODE, "code": code, "display": display}]},
            {"text": "Unpaid carer"},
        ],
        "name": [{"use": "official", "family": family,
                  "given": [given_name(rng, sex, born_year)]}],
        "telecom": [{"system": "phone", "value": drama_phone(rng, mobile=True),
                     "use": "mobile"}],
        "gender": sex,
        "address": [home],
    }

"""One patient's record under construction: their traits, ids and resources.

Every patient has their own `random.Random` seeded from (seed, index), so patient i is the
same whatever the size of the network or the order of generation.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from api.synthetic.ids import resource_id
from api.synthetic.network import Network, Practice, Staff
from api.synthetic.tables import Medicine

# Spread of the latent frailty factor (log-normal sigma), calibrated with the `assumed` rates
# of data/prevalence.csv so that people 65+ fall in the eFI bands about as Clegg et al. (Age
# Ageing 2016) report: fit ~50%, mild ~35%, moderate ~12%, severe ~3%.
FRAILTY_SIGMA = 0.55


def instant(day: date, hour: int = 9, minute: int = 0) -> str:
    """A FHIR instant (UTC) on `day`."""
    return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z"


def stamp(moment: datetime) -> str:
    """A FHIR instant (UTC) for a naive datetime taken as UTC."""
    return f"{moment:%Y-%m-%dT%H:%M}:00Z"


def at(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


@dataclass(slots=True)
class Record:
    """The traits drawn for a patient and the resources made for them so far."""

    seed: int
    index: int
    as_of: date
    rng: random.Random
    network: Network
    practice: Practice
    gp: Staff
    age: int
    sex: str
    born: date
    # Latent frailty: two log-normal factors of mean 1 from one normal draw, the full one
    # for geriatric syndromes and events, the damped one for common long-term conditions.
    frailty_full: float
    frailty_half: float
    patient_ref: str = ""
    conditions: dict[str, str] = field(default_factory=dict)  # key → "Condition/<id>"
    onsets: dict[str, date] = field(default_factory=dict)
    deficits: set[str] = field(default_factory=set)
    medicines: list[Medicine] = field(default_factory=list)
    carer_ref: str | None = None
    efi: float = 0.0
    resources: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, *, seed: int, index: int, as_of: date, network: Network, age: int,
              sex: str, born: date, rng: random.Random) -> Record:
        practice = network.practice_for(rng)
        z = rng.gauss(0.0, 1.0)
        return cls(seed=seed, index=index, as_of=as_of, rng=rng, network=network,
                   practice=practice, gp=rng.choice(practice.gps), age=age, sex=sex, born=born,
                   frailty_full=math.exp(FRAILTY_SIGMA * z - FRAILTY_SIGMA**2 / 2),
                   frailty_half=math.exp(FRAILTY_SIGMA / 2 * z - FRAILTY_SIGMA**2 / 8))

    def add(self, resource: dict[str, Any]) -> str:
        """Give `resource` its deterministic id, keep it, and return its reference."""
        type_ = resource.pop("resourceType")
        id_ = resource_id(self.seed, "patient", self.index, len(self.resources))
        self.resources.append({"resourceType": type_, "id": id_, **resource})
        return f"{type_}/{id_}"

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def poisson(self, mean: float) -> int:
        """A Poisson draw (Knuth's method; the means here are small)."""
        if mean <= 0:
            return 0
        limit, k, product = math.exp(-min(mean, 30.0)), 0, self.rng.random()
        while product > limit:
            k += 1
            product *= self.rng.random()
        return k

    def days_ago(self, low: int, high: int) -> date:
        """A day between `high` and `low` days before the as-of date, never before birth."""
        day = self.as_of - timedelta(days=self.rng.randint(low, high))
        return max(day, self.born)

    def days_ahead(self, low: int, high: int) -> date:
        return self.as_of + timedelta(days=self.rng.randint(low, high))

    def at_age(self, years: float) -> date:
        """The day the patient was `years` old (not after the as-of date)."""
        return min(self.born + timedelta(days=int(years * 365.25)), self.as_of)

    def working_time(self) -> tuple[int, int]:
        return self.rng.randint(8, 17), self.rng.choice((0, 10, 20, 30, 40, 50))

    def staff(self, role: str) -> Staff:
        return self.rng.choice(self.network.staff[role])

    def nurse(self) -> Staff:
        return self.rng.choice(self.practice.nurses)

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": self.patient_ref}

    def has(self, *keys: str) -> bool:
        return any(k in self.conditions for k in keys)

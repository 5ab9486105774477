"""Opting out of secondary use: who is left out of population (planning) exports.

A patient has opted out when one of their `Consent`s is `active` and its root provision is a
`deny` whose `purpose` names a secondary use: healthcare research (HRESCH), population health
(POPHLTH) or public health (PUBHLTH) in http://terminology.hl7.org/CodeSystem/v3-ActReason
(https://terminology.hl7.org/CodeSystem-v3-ActReason.html; the purpose of use a Consent
provision carries, https://hl7.org/fhir/R4/consent-definitions.html#Consent.provision.purpose).
This is the shape of England's National Data Opt-out ("research and planning",
https://digital.nhs.uk/services/national-data-opt-out). The Consent's scope does not matter
(`research` is the natural one; a `patient-privacy` Consent also restricts sharing,
consent/consents.py, where `purpose` is not read). A provision whose `period` has ended no
longer applies.

The codes are data: `consent/data/secondary-use-purposes.csv`.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

from fhir.dates import BadDate, date_range

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
DATA = Path(__file__).parent / "data" / "secondary-use-purposes.csv"


@cache
def purposes() -> frozenset[tuple[str, str]]:
    """(system, code) of every purpose of use that counts as secondary use."""
    with DATA.open(newline="") as f:
        return frozenset((row["system"], row["code"]) for row in csv.DictReader(f))


def opted_out(consent: dict[str, Any], now: float) -> bool:
    """Whether this Consent opts its patient out of secondary use at `now`."""
    if consent.get("resourceType") != "Consent" or consent.get("status") != "active":
        return False
    provision = consent.get("provision")
    if not isinstance(provision, dict) or provision.get("type") != "deny":
        return False
    period = provision.get("period")
    if isinstance(period, dict):
        try:
            if period.get("start") and date_range(period["start"])[0] > now:
                return False
            if period.get("end") and date_range(period["end"])[1] <= now:
                return False
        except BadDate:
            pass  # an unreadable period: read restrictively, the opt-out stands
    wanted = purposes()
    return any(isinstance(c, dict) and (c.get("system"), c.get("code")) in wanted
               for c in provision.get("purpose") or [])

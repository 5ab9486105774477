"""Booking: the Appointment write rule (careplans/booking/rules.py), installed at start-up.

Booking itself is the FHIR create of an Appointment naming a free Slot
(https://hl7.org/fhir/R4/appointment.html); cancelling or rescheduling is its update. No
route of its own: the rule applies to every write of an Appointment, whatever the route.
"""

from __future__ import annotations

from fastapi import FastAPI

from careplans.booking.rules import RULE
from fhir import writerules


def install(app: FastAPI) -> None:
    """Register the Appointment rule (idempotent)."""
    writerules.register("Appointment", RULE)

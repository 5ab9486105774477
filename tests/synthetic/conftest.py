"""Shared generated networks (generation is pure, so one copy serves every test)."""

from __future__ import annotations

from datetime import date

import pytest

from api.synthetic import Network, Record, generate

AS_OF = date(2025, 6, 1)


@pytest.fixture(scope="session")
def small_network() -> tuple[Network, list[Record]]:
    """200 patients, seed 7."""
    network, records = generate(7, 200, AS_OF)
    return network, list(records)


@pytest.fixture(scope="session")
def population_5000() -> list[Record]:
    """5,000 patients, seed 42: enough for prevalence by age band."""
    _, records = generate(42, 5_000, AS_OF)
    return list(records)

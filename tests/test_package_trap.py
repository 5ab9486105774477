"""The project's `fhir` package and `fhir.resources` must import side by side (DESIGN.md, Trap)."""

import importlib


def test_project_fhir_and_fhir_resources_both_import() -> None:
    store = importlib.import_module("fhir.store")
    resources = importlib.import_module("fhir.resources.R4B.patient")
    assert store.__file__ is not None and "site-packages" not in store.__file__
    assert resources.Patient.__name__ == "Patient"

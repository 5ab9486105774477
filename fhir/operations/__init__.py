"""FHIR operations (https://hl7.org/fhir/R4/operations.html), one module each.

An operation module parses its parameters into a query (400 for what it does not take) and
reads its answer under the caller's `Visibility` (fhir/visibility.py), which it applies to
every row it can reveal; the repository (api/repository.py) checks the caller and streams or
returns the answer. How to add one: docs/extending.md.
"""

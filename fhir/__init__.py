"""The record: validation, storage, search index and query building, bundles and history.

`fhir.resources` ships a regular package called `fhir`; extending ``__path__`` lets
``fhir.resources`` and this project's ``fhir.store`` import side by side when the repository
root comes first on ``sys.path`` (see DESIGN.md, "Trap").
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)

"""`_summary` and `_elements`: the parts of each resource a client asked for.

https://hl7.org/fhir/R4/search.html#summary and #elements. A shortened resource carries the
SUBSETTED tag (http://terminology.hl7.org/CodeSystem/v3-ObservationValue) so nobody mistakes it
for the whole record.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fhir import jsontext

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "subsetted"}
_ALWAYS = {"resourceType", "id", "meta"}


@cache
def _elements_of() -> dict[str, dict[str, list[str]]]:
    path = Path(__file__).resolve().parent.parent / "data" / "summary-elements.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _matches(key: str, names: set[str]) -> bool:
    if key in names:
        return True
    return any(n.endswith("[x]") and key.startswith(n[:-3]) and key[len(n) - 3:len(n) - 2]
               .isupper() for n in names)


def shape(content: str, type_: str, summary: str | None, elements: list[str] | None) -> str:
    """`content` cut down for `_summary` / `_elements` (unchanged when neither applies)."""
    if (summary in (None, "false")) and not elements:
        return content
    resource = jsontext.loads(content)
    info = _elements_of().get(type_, {"summary": [], "mandatory": []})
    mandatory = set(info["mandatory"]) | _ALWAYS
    if elements:
        keep = set(elements) | mandatory
        kept = {k: v for k, v in resource.items() if _matches(k, keep)}
    elif summary == "true":
        keep = set(info["summary"]) | mandatory
        kept = {k: v for k, v in resource.items() if _matches(k, keep)}
    elif summary == "text":
        kept = {k: v for k, v in resource.items() if k == "text" or _matches(k, mandatory)}
    else:  # data: everything but the narrative
        kept = {k: v for k, v in resource.items() if k != "text"}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), SUBSETTED]
    kept["meta"] = meta
    return jsontext.dumps(kept).decode()

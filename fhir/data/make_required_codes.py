"""Build `required-codes.json`: the codes of every FHIR R4 `code` element with a *required*
binding to a value set this server can list in full, keyed by the `fhir.resources` R4B model
and field that hold it (fhir/validation.py reads it).

Source: the official R4 (4.0.1) StructureDefinitions, ValueSets and CodeSystems in the npm
package `hl7.fhir.r4.examples` 4.0.1 (tests/r4_examples.py fetches it into .cache/).
A value set counts when each `compose.include` lists its concepts or takes a whole
CodeSystem of the package whose `content` is `complete` (all its concepts, nested ones too),
with no filter and no `exclude`; others (MIME types, languages, UCUM...) are left out and
their elements are not checked against a list. The entry "resource-types" lists every
resource type (for references). Run from the repository root:

    uv run python fhir/data/make_required_codes.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from fhir.validation import field_model  # noqa: E402
from tests.r4_examples import package_dir  # noqa: E402


def _load(package: Path, prefix: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in package.glob(f"{prefix}-*.json"):
        body = json.loads(path.read_text(encoding="utf-8"))
        if "url" in body:
            out[body["url"]] = body
    return out


def _concepts(concepts: list[dict[str, Any]]) -> list[str]:
    out = []
    for c in concepts:
        out.append(c["code"])
        out += _concepts(c.get("concept", ()))
    return out


def _codes(url: str, value_sets: dict[str, Any], systems: dict[str, Any]) -> list[str] | None:
    vs = value_sets.get(url.split("|")[0])
    if vs is None or "compose" not in vs or vs["compose"].get("exclude"):
        return None
    codes: list[str] = []
    for include in vs["compose"].get("include", ()):
        if include.get("filter") or include.get("valueSet"):
            return None
        if include.get("concept"):
            codes += [c["code"] for c in include["concept"]]
            continue
        system = systems.get(include.get("system", ""))
        if system is None or system.get("content") != "complete":
            return None
        codes += _concepts(system.get("concept", ()))
    return list(dict.fromkeys(codes)) or None


def main() -> None:
    package = package_dir()
    value_sets, systems = _load(package, "ValueSet"), _load(package, "CodeSystem")
    from fhir.resources.R4B import get_fhir_model_class

    out: dict[str, dict[str, Any]] = {}
    for path in sorted(package.glob("StructureDefinition-*.json")):
        sd = json.loads(path.read_text(encoding="utf-8"))
        if sd.get("derivation") != "specialization" or sd.get("kind") not in (
                "resource", "complex-type"):
            continue
        try:
            root = get_fhir_model_class(sd["type"])
        except (KeyError, ValueError):
            continue
        for element in sd["snapshot"]["element"]:
            binding = element.get("binding") or {}
            types = [t["code"] for t in element.get("type", ())]
            if binding.get("strength") != "required" or types != ["code"]:
                continue
            codes = _codes(binding["valueSet"], value_sets, systems)
            parts = element["path"].split(".")[1:]
            model: Any = root
            for part in parts[:-1]:
                model = field_model(model, part)
                if model is None:
                    break
            if model is None or parts[-1] not in model.model_fields or codes is None:
                continue
            out[f"{model.__name__}.{parts[-1]}"] = {
                "path": element["path"], "valueSet": binding["valueSet"], "codes": codes}
    # Not an element: every resource type's name, which a reference may use.
    url = "http://hl7.org/fhir/ValueSet/resource-types"
    out["resource-types"] = {"path": "Reference.reference (Type/id)", "valueSet": url,
                             "codes": _codes(url, value_sets, systems)}
    target = Path(__file__).parent / "required-codes.json"
    lines = [f" {json.dumps(key)}: {json.dumps(entry)}" for key, entry in sorted(out.items())]
    target.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")  # one a line
    print(f"{len(out)} elements -> {target}")


if __name__ == "__main__":
    main()

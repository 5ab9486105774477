"""FHIR rules on JSON values that the R4B models do not enforce. Pure functions, no models.

Each returns None when the value is fine, or a sentence saying what is wrong with it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection
from typing import Any

# How deep a resource may nest (JSON objects and arrays counted together). Real resources stay
# far below (a Questionnaire of groups nested 10 deep is about 25); beyond it a write is
# refused with 422 rather than risk the recursion limits of the models, FHIRPath and the JSON
# writer (orjson stops at 254).
MAX_DEPTH = 128

ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# https://hl7.org/fhir/R4/references.html#literal: Type/id, optionally /_history/vid.
RELATIVE = re.compile(r"^([A-Za-z]{1,64})/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$")
ABSOLUTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s/?#]+[^\s]*$")
URN = re.compile(r"^urn:(uuid:[0-9a-fA-F\-]{36}|oid:[0-2](\.(0|[1-9][0-9]*))+)$")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests objects and arrays deeper than `limit` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, (dict, list)))
    return False


def reference_problem(ref: str, known_types: Collection[str],
                      local_ids: set[str] | None) -> str | None:
    """What is wrong with a Reference.reference (https://hl7.org/fhir/R4/references.html):
    a relative Type/id[/_history/vid] of a known type, an absolute URL, a urn:uuid/urn:oid,
    or `#id` of a contained resource (`local_ids`; `#` alone is the container). Whether the
    type is one the element allows is not judged: official R4 examples break that rule."""
    if ref.startswith("#"):
        if ref == "#" or (local_ids is not None and ref[1:] in local_ids):
            return None
        return f"'{ref}' names no contained resource of this resource"
    if ref.startswith("urn:"):
        return None if URN.match(ref) else f"'{ref}' is not a urn:uuid or urn:oid"
    if "://" in ref:
        return None if ABSOLUTE.match(ref) else f"'{ref}' is not an absolute URL"
    if "?" in ref:
        return (f"'{ref}' is a conditional reference, which only a transaction Bundle "
                "resolves")
    found = RELATIVE.match(ref)
    if found is None:
        return f"'{ref}' is not a reference of the form Type/id"
    type_ = found.group(1)
    if type_ not in known_types:
        return f"'{ref}': '{type_}' is not a FHIR resource type"
    return None


XHTML = "{http://www.w3.org/1999/xhtml}"
# https://hl7.org/fhir/R4/narrative.html#xhtml: no active content, forms, frames or styles
# from elsewhere; no event attributes (txt-1).
_FORBIDDEN = {"script", "object", "applet", "embed", "iframe", "frame", "frameset", "form",
              "input", "button", "select", "textarea", "base", "link", "meta", "style",
              "html", "head", "body", "title"}


def narrative_problem(div: str) -> str | None:
    """What is wrong with a Narrative.div: it must be well-formed XHTML, one `div` in the
    XHTML namespace, of the basic formatting elements only (txt-1)."""
    if "<!DOCTYPE" in div.upper() or "<!ENTITY" in div.upper() or "<?" in div:
        return "a DOCTYPE, entity declaration or processing instruction is not allowed"
    try:
        root = ET.fromstring(div)
    except ET.ParseError as exc:
        return f"it is not well-formed XHTML ({exc})"
    if root.tag != f"{XHTML}div":
        return ("it must be a single <div xmlns=\"http://www.w3.org/1999/xhtml\"> element, "
                f"not <{root.tag.replace(XHTML, '')}>")
    for element in root.iter():
        if not isinstance(element.tag, str) or not element.tag.startswith(XHTML):
            return f"<{element.tag}> is not an XHTML element"
        name = element.tag[len(XHTML):]
        if name in _FORBIDDEN:
            return f"<{name}> is not allowed in a narrative"
        for attr in element.attrib:
            if attr.lower().startswith("on"):
                return f"the attribute '{attr}' is not allowed in a narrative"
    return None

"""FHIR elements in plain words: what a code means, who wrote an entry, a value with its unit."""

from __future__ import annotations

from typing import Any

from web.fhir_client import ApiError, Fhir

Body = dict[str, Any]


def concept(value: Body | list[Body] | None) -> str:
    """A CodeableConcept (or the first of a list) as text: its text, else a coding's display."""
    if isinstance(value, list):
        value = value[0] if value else None
    if not value:
        return ""
    if value.get("text"):
        return str(value["text"])
    for coding in value.get("coding") or ():
        if coding.get("display"):
            return str(coding["display"])
    codes = [c.get("code") for c in value.get("coding") or () if c.get("code")]
    return str(codes[0]) if codes else ""


def codes(value: Body | None) -> set[str]:
    return {c.get("code") for c in (value or {}).get("coding") or () if c.get("code")}


def quantity(q: Body | None) -> str:
    if not q or q.get("value") is None:
        return ""
    value = q["value"]
    shown = f"{value:g}" if isinstance(value, float) else str(value)
    unit = q.get("unit") or q.get("code") or ""
    return f"{shown} {unit}".strip()


def observation_value(obs: Body) -> str:
    if obs.get("valueQuantity"):
        return quantity(obs["valueQuantity"])
    if obs.get("component"):
        parts = [quantity(c.get("valueQuantity")) for c in obs["component"]]
        values = [p.split(" ")[0] for p in parts if p]
        unit = parts[0].partition(" ")[2] if parts and parts[0] else ""
        return f"{'/'.join(values)} {unit}".strip()
    for key in ("valueString", "valueInteger", "valueBoolean"):
        if key in obs:
            return str(obs[key])
    return concept(obs.get("valueCodeableConcept"))


def references(body: Body, *paths: str) -> list[str]:
    """The references found at `paths` (top-level names; lists followed)."""
    out = []
    for path in paths:
        value = body.get(path)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and isinstance(item.get("reference"), str):
                out.append(item["reference"])
    return out


AUTHOR_PATHS = ("recorder", "asserter", "performer", "requester", "author", "sender",
                "informationSource", "recordedBy")
DIRECTORY = ("Practitioner", "PractitionerRole", "Organization")


class Names:
    """Names of the people and organisations entries point to, looked up once per page
    through the API (directory types a patient may read)."""

    def __init__(self, fhir: Fhir, me: str, my_name: str = "you") -> None:
        self.fhir, self.me = fhir, me
        self.known: dict[str, str] = {me: my_name}

    async def load(self, entries: list[Body]) -> None:
        wanted: dict[str, set[str]] = {}
        for entry in entries:
            for path in AUTHOR_PATHS:
                value = entry.get(path)
                for item in value if isinstance(value, list) else [value]:
                    if not isinstance(item, dict):
                        continue
                    ref = item.get("reference")
                    if isinstance(ref, str) and item.get("display"):
                        self.known.setdefault(ref, str(item["display"]))
                    elif isinstance(ref, str) and ref not in self.known:
                        type_, _, id_ = ref.partition("/")
                        if type_ in DIRECTORY and id_:
                            wanted.setdefault(type_, set()).add(id_)
        for type_, ids in wanted.items():
            try:
                found = await self.fhir.search(type_, [("_id", ",".join(sorted(ids))),
                                                       ("_count", "100")])
            except ApiError:
                continue
            for body in found:
                self.known[f"{type_}/{body['id']}"] = name_of(body)

    def who(self, entry: Body) -> str:
        """Who wrote or did the entry, in words ("" if the record does not say)."""
        for path in AUTHOR_PATHS:
            value = entry.get(path)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict):
                    ref = item.get("reference")
                    if ref in self.known:
                        return self.known[ref]
                    if item.get("display"):
                        return str(item["display"])
        source = (entry.get("meta") or {}).get("source")
        if source:
            return self.known.get(source, "")
        return ""

    def of(self, reference: str | None) -> str:
        return self.known.get(reference or "", "")


def name_of(body: Body) -> str:
    if isinstance(body.get("name"), str):
        return str(body["name"])
    for name in body.get("name") or ():
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or ()), *(name.get("given") or ()), name.get("family")]
        shown = " ".join(str(p) for p in parts if p)
        if shown:
            return shown
    if body.get("resourceType") == "PractitionerRole":
        return concept(body.get("code")) or "a member of staff"
    return ""


def narrative(div: str | None) -> list[tuple[str, str]]:
    """A narrative's XHTML as (kind, text) blocks: "heading", "item" or "para". Only the
    words are kept (the page escapes them), never the markup: nothing in a record can run
    in the page."""
    from html.parser import HTMLParser

    blocks: list[tuple[str, str]] = []

    class Reader(HTMLParser):
        kind, words, hidden = "para", [""], 0

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            if tag in ("script", "style"):
                self.hidden += 1
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "div", "br"):
                self.flush()
                self.kind = ("heading" if tag[0] == "h" and tag[1:].isdigit()
                             else "item" if tag == "li" else "para")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style"):
                self.hidden = max(0, self.hidden - 1)
            if tag in ("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "div"):
                self.flush()

        def handle_data(self, data: str) -> None:
            if not self.hidden:
                self.words.append(data)

        def flush(self) -> None:
            text = " ".join("".join(self.words).split())
            if text:
                blocks.append((self.kind, text))
            self.words, self.kind = [""], "para"

    reader = Reader()
    reader.feed(div or "")
    reader.flush()
    return blocks

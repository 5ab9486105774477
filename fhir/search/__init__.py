"""Search (https://hl7.org/fhir/R4/search.html): only this package knows how a parameter
becomes SQL. `params` parses, `predicates` holds one builder per parameter type, `paging`
sorts and pages by keyset, `include` follows references, `summary` shapes resources,
`execute` runs a page.
"""

import hashlib

from fhir.search.execute import Page, count, match_ids, run
from fhir.search.paging import decode as decode_cursor
from fhir.search.paging import encode as encode_cursor
from fhir.search.params import DEFAULT_COUNT, MAX_COUNT, SearchQuery, parse
from fhir.search.values import split_values

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Page", "SearchQuery", "canonical_query", "count",
           "decode_cursor", "encode_cursor", "match_ids", "parse", "run", "split_values"]


def canonical_query(params: list[tuple[str, str]]) -> str:
    """A stable text form of a conditional query, for the conditional-create key (at most
    1,024 characters: a longer one is its start and the SHA-256 of the whole, so two long
    queries that share their start keep keys of their own)."""
    text = "&".join(f"{k}={v}" for k, v in sorted(params))
    if len(text) <= 1024:
        return text
    whole = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:1024 - 65]}#{whole}"

"""Search (https://hl7.org/fhir/R4/search.html): only this package knows how a parameter
becomes SQL. `params` parses, `predicates` holds one builder per parameter type, `paging`
sorts and pages by keyset, `include` follows references, `summary` shapes resources,
`execute` runs a page.
"""

from fhir.search.execute import Page, count, match_ids, run
from fhir.search.paging import decode as decode_cursor
from fhir.search.paging import encode as encode_cursor
from fhir.search.params import DEFAULT_COUNT, MAX_COUNT, SearchQuery, parse
from fhir.search.values import split_values

__all__ = ["DEFAULT_COUNT", "MAX_COUNT", "Page", "SearchQuery", "canonical_query", "count",
           "decode_cursor", "encode_cursor", "match_ids", "parse", "run", "split_values"]


def canonical_query(params: list[tuple[str, str]]) -> str:
    """A stable text form of a conditional query, for the conditional-create key."""
    return "&".join(f"{k}={v}" for k, v in sorted(params))[:1024]

"""Searchset and history Bundles, assembled around the stored JSON text without parsing it.

https://hl7.org/fhir/R4/bundle.html. `base` is the server's public base URL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from fhir.search import Page, SearchQuery
from fhir.search.summary import shape
from fhir.store import iso_instant


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def searchset(*, base: str, page: Page, query: SearchQuery) -> bytes:
    """A searchset Bundle: the page's matches (search.mode=match), then its includes."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if page.total is not None:
        head["total"] = page.total
    links = {"self": query.link()}
    if page.next is not None:
        links["next"] = query.link(page.next)
    if page.previous is not None:
        links["previous"] = query.link(page.previous, backward=True)
    head["link"] = [{"relation": rel, "url": f"{base}/{url}"} for rel, url in links.items()]
    parts = [_dumps(head)[:-1], ',"entry":[']
    entries = [(row, "match") for row in page.matches]
    entries += [(row, "include") for row in page.included]
    if not entries:  # FHIR JSON has no empty arrays (https://hl7.org/fhir/R4/json.html)
        return _dumps(head).encode()
    for i, ((_rid, type_, id_, content), mode) in enumerate(entries):
        if i:
            parts.append(",")
        if mode == "match":
            content = shape(content, type_, query.summary, query.elements)
        parts.append(f'{{"fullUrl":{_dumps(f"{base}/{type_}/{id_}")},"resource":')
        parts.append(content)
        parts.append(f',"search":{{"mode":"{mode}"}}}}')
    parts.append("]}")
    return "".join(parts).encode()


def history_bundle(*, base: str, rows: list[Any], total: int | None,
                   links: dict[str, str]) -> bytes:
    """A history Bundle: each version with its request and response, newest first."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": f"{base}/{url}"} for rel, url in links.items()]
    parts = [_dumps(head)[:-1], ',"entry":[']
    for i, (_hid, type_, id_, version, last_updated, method, deleted, content) in enumerate(rows):
        if i:
            parts.append(",")
        url = f"{type_}/{id_}" if method != "POST" else type_
        status = "201 Created" if version == 1 and not deleted else "200 OK"
        if deleted:
            status = "204 No Content"
        entry = {
            "fullUrl": f"{base}/{type_}/{id_}",
            "request": {"method": method, "url": url},
            "response": {"status": status, "etag": f'W/"{version}"',
                         "lastModified": iso_instant(last_updated)},
        }
        text = _dumps(entry)
        if content is not None and not deleted:  # a deletion's content is JSON null
            text = text[:-1] + ',"resource":' + content + "}"
        parts.append(text)
    parts.append("]}")
    return "".join(parts).encode()


STREAM_CHUNK = 32 * 1024  # bytes gathered before a streamed Bundle hands a piece on


async def searchset_stream(*, base: str, links: dict[str, str],
                           rows: AsyncIterator[tuple[int, str, str, str]],
                           chunk_size: int = STREAM_CHUNK) -> AsyncIterator[bytes]:
    """A searchset Bundle written while `rows` are read (all search.mode=match): pieces of
    about `chunk_size` bytes, so neither the Bundle nor the rows are ever held whole."""
    head: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    head["link"] = [{"relation": rel, "url": f"{base}/{url}"} for rel, url in links.items()]
    parts = [_dumps(head)[:-1], ',"entry":[']
    size = 0
    first = True
    async for _rid, type_, id_, content in rows:
        if not first:
            parts.append(",")
        first = False
        parts.append(f'{{"fullUrl":{_dumps(f"{base}/{type_}/{id_}")},"resource":')
        parts.append(content)
        parts.append(',"search":{"mode":"match"}}')
        size += len(content) + 100
        if size >= chunk_size:
            yield "".join(parts).encode()
            parts, size = [], 0
    parts.append("]}")
    yield "".join(parts).encode()

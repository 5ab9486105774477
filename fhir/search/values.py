"""The small grammar of search values: commas, pipes, escapes and prefixes.

https://hl7.org/fhir/R4/search.html#escaping and #prefix.
"""

from __future__ import annotations

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def split_values(text: str, *, keep_escapes: bool = False) -> list[str]:
    """Split on commas not escaped with a backslash, and unescape \\, \\| \\$ \\\\.

    `keep_escapes`: unescape only \\, and leave the rest to a token's own split on |.
    """
    out, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in ",|$\\":
            cur.append(text[i + 1] if text[i + 1] == "," or not keep_escapes else text[i:i + 2])
            i += 2
            continue
        if ch == ",":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


def split_unescaped(value: str, sep: str) -> list[str]:
    """`value` split on `sep` not escaped with a backslash, each part unescaped."""
    parts, cur, i = [], [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in "|$\\,":
            cur.append(value[i + 1])
            i += 2
            continue
        if value[i] == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(value[i])
        i += 1
    return [*parts, "".join(cur)]


def split_prefix(value: str) -> tuple[str, str]:
    """A comparison prefix and the rest: ``ge2020`` → (ge, 2020); none means eq."""
    if len(value) > 2 and value[:2] in PREFIXES and (value[2].isdigit() or value[2] in "-+."):
        return value[:2], value[2:]
    return "eq", value


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")

"""A small, strict reader for Weka ARFF files (dense format), as the AVEC challenges distribute.

Handled as the ARFF specification says: ``%`` comments, blank lines anywhere, keywords in any
case (``@RELATION``, ``@attribute``), attribute names and values quoted with ``'`` or ``"``
(with backslash escapes), the types ``numeric``/``real``/``integer``/``string``/``date`` and
nominal ``{a, b, c}``, and ``?`` for a missing value (returned as ``None``).  Sparse rows
(``{0 x, 3 y}``) and relational attributes are refused with an error naming the file and line.

Every error is an :class:`EmotkError` whose message starts with ``path:line``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from emotk.errors import EmotkError, where

NUMERIC_TYPES = ("numeric", "real", "integer")


@dataclass
class Attribute:
    name: str
    type: str  # numeric | string | date | nominal (relational is refused)
    values: tuple[str, ...] = ()  # the nominal values


@dataclass
class Arff:
    path: Path
    relation: str
    attributes: list[Attribute]
    rows: list[list] = field(default_factory=list)  # numeric -> float, others -> str, missing -> None
    line_numbers: list[int] = field(default_factory=list)  # source line of each row

    def column(self, name: str) -> list:
        for i, a in enumerate(self.attributes):
            if a.name == name:
                return [r[i] for r in self.rows]
        raise EmotkError(f"{self.path}: no attribute {name!r}")


def _split_fields(text: str, loc: str) -> list[tuple[str, bool]]:
    """Split a data row at unquoted commas; returns ``(token, was_quoted)`` with quotes removed."""
    out: list[tuple[str, bool]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            if out:  # a trailing comma leaves an empty last field
                out.append(("", False))
            break
        if text[i] in "'\"":
            quote, buf, i = text[i], [], i + 1
            while i < n and text[i] != quote:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(text[i])
                i += 1
            if i >= n:
                raise EmotkError(f"{loc}: unterminated quote")
            i += 1
            out.append(("".join(buf), True))
        else:
            j = i
            while j < n and text[j] not in ", \t":
                j += 1
            out.append((text[i:j], False))
            i = j
        while i < n and text[i] in " \t":
            i += 1
        if i >= n:
            break
        if text[i] != ",":
            raise EmotkError(f"{loc}: expected ',' at column {i + 1}, got {text[i]!r}")
        i += 1
    return out


def _strip_comment(line: str) -> str:
    """Remove a ``%`` comment that is not inside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "%":
            return line[:i]
    return line


def _take_name(text: str, loc: str) -> tuple[str, str]:
    """Split a (possibly quoted) name off the front of ``text``; returns ``(name, rest)``."""
    text = text.strip()
    if not text:
        raise EmotkError(f"{loc}: missing name")
    if text[0] in "'\"":
        quote, buf, i = text[0], [], 1
        while i < len(text) and text[i] != quote:
            if text[i] == "\\" and i + 1 < len(text):
                i += 1
            buf.append(text[i])
            i += 1
        if i >= len(text):
            raise EmotkError(f"{loc}: unterminated quote")
        return "".join(buf), text[i + 1:].strip()
    parts = text.split(maxsplit=1)
    return parts[0], (parts[1] if len(parts) > 1 else "")


def _parse_attribute(rest: str, loc: str) -> Attribute:
    name, type_text = _take_name(rest, loc)
    if not type_text:
        raise EmotkError(f"{loc}: attribute {name!r} has no type")
    if type_text.startswith("{"):
        if not type_text.endswith("}"):
            raise EmotkError(f"{loc}: nominal attribute {name!r}: missing closing brace")
        values = tuple(tok for tok, _ in _split_fields(type_text[1:-1], loc))
        return Attribute(name, "nominal", values)
    kind = type_text.split()[0].lower()
    if kind in NUMERIC_TYPES:
        return Attribute(name, "numeric")
    if kind in ("string", "date"):
        return Attribute(name, kind)
    raise EmotkError(f"{loc}: attribute {name!r} has an unsupported type {type_text!r}")


def _convert(token: str, quoted: bool, attr: Attribute, loc: str):
    if token == "?" and not quoted:
        return None
    if attr.type == "numeric":
        try:
            x = float(token)
        except ValueError:
            raise EmotkError(f"{loc}: attribute {attr.name!r}: not a number: {token!r}") from None
        if math.isnan(x):
            raise EmotkError(f"{loc}: attribute {attr.name!r} is NaN")
        if math.isinf(x):
            raise EmotkError(f"{loc}: attribute {attr.name!r} is infinite")
        return x
    if attr.type == "nominal" and token not in attr.values:
        raise EmotkError(f"{loc}: attribute {attr.name!r}: {token!r} is not one of {{{', '.join(attr.values)}}}")
    return token


def read_arff(path: str | Path) -> Arff:
    """Parse a dense ARFF file; raise :class:`EmotkError` naming ``path:line`` on any problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EmotkError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise EmotkError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    relation = None
    attributes: list[Attribute] = []
    arff = None
    for n, raw in enumerate(text.splitlines(), start=1):
        loc = where(path, n)
        line = _strip_comment(raw).strip()
        if not line:
            continue
        if arff is None:  # header
            keyword, rest = (line.split(maxsplit=1) + [""])[:2]
            keyword = keyword.lower()
            if keyword == "@relation":
                if relation is not None:
                    raise EmotkError(f"{loc}: second @relation")
                relation, _ = _take_name(rest, loc)
            elif keyword == "@attribute":
                if relation is None:
                    raise EmotkError(f"{loc}: @attribute before @relation")
                attr = _parse_attribute(rest, loc)
                if any(a.name == attr.name for a in attributes):
                    raise EmotkError(f"{loc}: attribute {attr.name!r} declared twice")
                attributes.append(attr)
            elif keyword == "@data":
                if not attributes:
                    raise EmotkError(f"{loc}: @data before any @attribute")
                arff = Arff(path, relation, attributes)
            else:
                raise EmotkError(f"{loc}: expected @relation, @attribute or @data, got {raw.strip()!r}")
            continue
        if line.startswith("{"):
            raise EmotkError(f"{loc}: sparse ARFF rows are not supported")
        fields = _split_fields(line, loc)
        if len(fields) != len(attributes):
            raise EmotkError(f"{loc}: expected {len(attributes)} values, got {len(fields)}")
        arff.rows.append([_convert(tok, q, a, loc) for (tok, q), a in zip(fields, attributes)])
        arff.line_numbers.append(n)
    if arff is None:
        raise EmotkError(f"{path}: no @data section")
    return arff

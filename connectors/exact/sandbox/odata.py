"""The slice of OData v2 the Exact sandbox understands.

``$filter`` supports what the connector and Exact's documentation use:
comparisons (``eq ne gt ge lt le``) of a field or ``trim(field)`` with a string,
number, ``guid'…'`` or ``datetime'…'`` literal, joined by ``and`` / ``or`` (``and``
binds tighter) with optional parentheses. Anything else is a 400 with Exact's error
body, as a real unsupported filter would be.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

__all__ = ["FilterError", "compile_filter"]

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<lparen>\()|(?P<rparen>\))|"
    r"(?P<guid>guid'[^']*')|(?P<datetime>datetime'[^']*')|"
    r"(?P<string>'(?:[^']|'')*')|"
    r"(?P<number>-?\d+(?:\.\d+)?)L?|"
    r"(?P<word>[A-Za-z_][A-Za-z0-9_/]*)"
    r")"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}


class FilterError(ValueError):
    """The ``$filter`` text is outside the supported subset."""


Predicate = Callable[[dict[str, Any]], bool]


def _tokens(text: str) -> list[tuple[str, str]]:
    result = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise FilterError(f"cannot read $filter at {text[position:]!r}")
        kind = match.lastgroup or ""
        result.append((kind, match.group(kind)))
        position = match.end()
        while position < len(text) and text[position] == " ":
            position += 1
    return result


def _literal(kind: str, value: str) -> Any:
    if kind == "string":
        return value[1:-1].replace("''", "'")
    if kind == "guid":
        return value[5:-1].lower()
    if kind == "datetime":
        return datetime.fromisoformat(value[9:-1]).replace(tzinfo=UTC)
    if kind == "number":
        return float(value) if "." in value else int(value)
    if kind == "word" and value in {"true", "false"}:
        return value == "true"
    if kind == "word" and value == "null":
        return None
    raise FilterError(f"expected a literal, got {value!r}")


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower() if _is_guid(left) else left, right
    if left is None or right is None:
        return (
            (left == right) if op == "eq" else (left != right) if op == "ne" else False
        )
    try:
        if isinstance(right, int | float) and isinstance(left, str):
            left = float(left)
        return {
            "eq": left == right,
            "ne": left != right,
            "gt": left > right,
            "ge": left >= right,
            "lt": left < right,
            "le": left <= right,
        }[op]
    except TypeError as err:
        raise FilterError(f"cannot compare {left!r} {op} {right!r}") from err


def _is_guid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def compile_filter(
    text: str, value_of: Callable[[dict[str, Any], str], Any]
) -> Predicate:
    """A predicate over rows for ``text``; ``value_of(row, field)`` reads a field."""
    tokens = _tokens(text)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise FilterError("unexpected end of $filter")
        position += 1
        return tokens[position - 1]

    def comparison() -> Predicate:
        kind, value = take()
        if kind == "lparen":
            inner = disjunction()
            if take()[0] != "rparen":
                raise FilterError("missing ')'")
            return inner
        trim = False
        if kind == "word" and value == "trim":
            if take()[0] != "lparen":
                raise FilterError("trim needs '('")
            kind, value = take()
            if take()[0] != "rparen":
                raise FilterError("trim needs ')'")
            trim = True
        if kind != "word":
            raise FilterError(f"expected a field name, got {value!r}")
        field = value
        op_kind, op = take()
        if op_kind != "word" or op not in _OPS:
            raise FilterError(f"unsupported operator {op!r}")
        right = _literal(*take())

        def predicate(row: dict[str, Any]) -> bool:
            left = value_of(row, field)
            if trim and isinstance(left, str):
                left = left.strip()
            return _compare(left, op, right)

        return predicate

    def conjunction() -> Predicate:
        parts = [comparison()]
        while peek() == ("word", "and"):
            take()
            parts.append(comparison())
        return lambda row: all(part(row) for part in parts)

    def disjunction() -> Predicate:
        parts = [conjunction()]
        while peek() == ("word", "or"):
            take()
            parts.append(conjunction())
        return lambda row: any(part(row) for part in parts)

    predicate = disjunction()
    if position != len(tokens):
        raise FilterError(f"unexpected {tokens[position][1]!r} in $filter")
    return predicate

"""Hardened XML parsing for documents that come from outside.

UBL documents never need a DTD, so any ``<!DOCTYPE`` or ``<!ENTITY`` is refused before
the parser sees it; this stops XXE (external entities reading files or URLs) and
entity bombs ("billion laughs") whatever the parser would do with them. The lxml
parser itself is also configured to never expand entities, never load a DTD and never
touch the network, and input above a size limit is refused unread.
"""

from __future__ import annotations

import re

from lxml import etree

from .errors import DocumentError, UnsafeDocument

__all__ = ["DEFAULT_MAX_BYTES", "parse_xml"]

#: Largest document accepted (a UBL invoice with embedded PDFs rarely passes 10 MB).
DEFAULT_MAX_BYTES = 20 * 1024 * 1024

_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
    )


def parse_xml(
    data: bytes | str, *, source: str = "document", max_bytes: int = DEFAULT_MAX_BYTES
) -> etree._ElementTree:
    """Parse untrusted XML; refusals name ``source``.

    :raises UnsafeDocument: DTD or entity declarations, or more than ``max_bytes``.
    :raises DocumentError: the bytes are not well-formed XML.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise UnsafeDocument(
            f"document is {len(raw)} bytes, above the limit of {max_bytes}",
            record=source,
            details={"reason": "size", "size": len(raw), "limit": max_bytes},
        )
    # UTF-16 input would hide the declaration from a byte search: look at it decoded.
    probe = raw
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        probe = raw.decode("utf-16", errors="replace").encode("utf-8")
    found = _DECLARATION.search(probe)
    if found:
        kind = found.group(1).decode().upper()
        raise UnsafeDocument(
            f"<!{kind}> declarations are not allowed (XXE / entity expansion refused)",
            record=source,
            details={"reason": kind.lower()},
        )
    try:
        tree = etree.ElementTree(etree.fromstring(raw, _parser()))
    except etree.XMLSyntaxError as err:
        raise DocumentError(
            f"not well-formed XML: {err}", record=source, details={"reason": "syntax"}
        ) from err
    if tree.docinfo.doctype:
        raise UnsafeDocument(
            "a DOCTYPE is not allowed", record=source, details={"reason": "doctype"}
        )
    return tree

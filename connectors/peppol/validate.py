"""Validate UBL documents with the official Peppol BIS Billing 3.0 artefacts.

Three layers run on every document, as the OpenPeppol validation service does:

1. the OASIS UBL 2.1 XSD (Invoice or CreditNote), with lxml;
2. the CEN EN 16931 rules (``xslt/CEN-EN16931-UBL.xslt``), with Saxon-HE (saxonche);
3. the Peppol rules (``xslt/PEPPOL-EN16931-UBL.xslt``), with saxonche.

The stylesheets are XSLT 2.0 compiled from Schematron; libxslt cannot run them, so
saxonche does. Compiling them costs most of a second, so each rules directory is
compiled once per process and the :class:`Validator` is shared (:func:`get_validator`).

The rules directory holds the files exactly as OpenPeppol publishes them::

    <dir>/ubl-2.1/xsd/maindoc/UBL-Invoice-2.1.xsd   (+ CreditNote, + common/)
    <dir>/xslt/CEN-EN16931-UBL.xslt
    <dir>/xslt/PEPPOL-EN16931-UBL.xslt

It is taken from ``PEPPOL_RULES_DIR``, else from ``$CRM_SHARED_DIR/specs/peppol``,
else from a ``shared/specs/peppol`` folder beside the checkout (the project's
development layout).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from .errors import RulesNotFound, RulesUnusable, ValidationFailed
from .safexml import parse_xml

__all__ = [
    "RULES_DIR_ENV",
    "Assertion",
    "ValidationResult",
    "Validator",
    "find_rules_dir",
    "get_validator",
]

_logger = logging.getLogger(__name__)

RULES_DIR_ENV = "PEPPOL_RULES_DIR"
_SVRL = "{http://purl.oclc.org/dsdl/svrl}"
_ROOTS = {
    "{urn:oasis:names:specification:ubl:schema:xsd:Invoice-2}Invoice": "Invoice",
    "{urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2}CreditNote": (
        "CreditNote"
    ),
}
_STYLESHEETS = ("CEN-EN16931-UBL.xslt", "PEPPOL-EN16931-UBL.xslt")


@dataclass(frozen=True)
class Assertion:
    """One failed assert: rule id, ``fatal`` or ``warning``, message, location."""

    rule: str
    flag: str
    message: str
    location: str

    @property
    def fatal(self) -> bool:
        return self.flag == "fatal"

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "flag": self.flag,
            "message": self.message,
            "location": self.location,
        }


@dataclass(frozen=True)
class ValidationResult:
    """Outcome for one document; valid means no fatal assert."""

    source: str
    errors: tuple[Assertion, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return not any(a.fatal for a in self.errors)

    @property
    def fatal(self) -> list[Assertion]:
        return [a for a in self.errors if a.fatal]

    @property
    def fatal_rules(self) -> list[str]:
        """Ids of the fatal rules, each once, in document order."""
        return list(dict.fromkeys(a.rule for a in self.fatal))

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "valid": self.valid,
            "errors": [a.as_dict() for a in self.errors],
        }

    def raise_for_fatal(self, *, record: str | None = None) -> None:
        """Raise :class:`ValidationFailed` carrying the rule ids when not valid."""
        if self.valid:
            return
        rules = self.fatal_rules
        raise ValidationFailed(
            f"{len(self.fatal)} fatal Peppol rule(s) failed: {', '.join(rules)}",
            rules=rules,
            errors=[a.as_dict() for a in self.fatal],
            record=record or self.source,
        )


def _candidates() -> Iterable[Path]:
    env = os.environ.get(RULES_DIR_ENV)
    if env:
        yield Path(env)
        return
    shared = os.environ.get("CRM_SHARED_DIR")
    if shared:
        yield Path(shared) / "specs" / "peppol"
    here = Path(__file__).resolve()
    for parent in here.parents:
        yield parent / "shared" / "specs" / "peppol"
    yield Path.cwd() / "shared" / "specs" / "peppol"
    yield Path.cwd().parent / "shared" / "specs" / "peppol"


def _complete(path: Path) -> bool:
    return (path / "xslt" / _STYLESHEETS[1]).is_file() and (
        path / "ubl-2.1" / "xsd" / "maindoc" / "UBL-Invoice-2.1.xsd"
    ).is_file()


def find_rules_dir(rules_dir: str | Path | None = None) -> Path:
    """The rules directory: ``rules_dir``, ``$PEPPOL_RULES_DIR`` or the shared copy."""
    candidates = [Path(rules_dir)] if rules_dir else list(_candidates())
    for path in candidates:
        if _complete(path):
            return path.resolve()
    tried = ", ".join(dict.fromkeys(str(p) for p in candidates))
    raise RulesNotFound(
        "Peppol validation artefacts not found (UBL 2.1 XSD and the CEN + PEPPOL "
        f"XSLT); set {RULES_DIR_ENV} to a folder with ubl-2.1/xsd and xslt, or "
        f"CRM_SHARED_DIR to one with specs/peppol (README). Tried: {tried}",
        field=RULES_DIR_ENV,
    )


class _Saxon:
    """The one Saxon processor of the process (SaxonC wants a single instance)."""

    _lock = threading.Lock()
    _processor: Any = None

    @classmethod
    def processor(cls) -> Any:
        with cls._lock:
            if cls._processor is None:
                from saxonche import PySaxonProcessor

                cls._processor = PySaxonProcessor(license=False)
            return cls._processor


class Validator:
    """XSD + CEN + PEPPOL validation with stylesheets compiled once.

    Use :func:`get_validator` rather than this constructor so a process compiles
    the stylesheets only once. ``compile_seconds`` is what compiling the two
    stylesheets cost, ``setup_seconds`` the whole constructor (with the Invoice
    XSD; the CreditNote XSD is loaded on the first credit note).
    """

    def __init__(self, rules_dir: str | Path | None = None) -> None:
        started = time.perf_counter()
        self.rules_dir = find_rules_dir(rules_dir)
        self._lock = threading.Lock()
        self._schemas: dict[str, etree.XMLSchema] = {}
        self._schema("Invoice")
        processor = _Saxon.processor()
        compiler = processor.new_xslt30_processor()
        compiling = time.perf_counter()
        self._stylesheets = []
        for name in _STYLESHEETS:
            path = self.rules_dir / "xslt" / name
            try:
                text = path.read_text(encoding="utf-8")
                stylesheet = compiler.compile_stylesheet(stylesheet_text=text)
            except Exception as err:  # saxonche raises its own PySaxonApiError
                raise RulesUnusable(
                    f"{path}: cannot be compiled ({str(err)[:200]})", record=str(path)
                ) from err
            self._stylesheets.append(stylesheet)
        self.compile_seconds = time.perf_counter() - compiling
        # Documents are parsed by us (no DTD ever reaches Saxon); forbid any URI
        # access from the stylesheets' side too.
        processor.set_configuration_property(
            "http://saxon.sf.net/feature/allowedProtocols", ""
        )
        self._processor = processor
        self.setup_seconds = time.perf_counter() - started
        _logger.info(
            "peppol rules from %s ready in %.2f s (stylesheets %.2f s)",
            self.rules_dir,
            self.setup_seconds,
            self.compile_seconds,
        )

    def _schema(self, kind: str) -> etree.XMLSchema:
        """The UBL 2.1 schema of ``Invoice`` or ``CreditNote``, loaded once."""
        schema = self._schemas.get(kind)
        if schema is None:
            path = (
                self.rules_dir / "ubl-2.1" / "xsd" / "maindoc" / f"UBL-{kind}-2.1.xsd"
            )
            try:
                schema = etree.XMLSchema(etree.parse(str(path)))
            except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as err:
                raise RulesUnusable(
                    f"{path}: cannot be loaded ({str(err)[:200]})", record=str(path)
                ) from err
            self._schemas[kind] = schema
        return schema

    def validate(
        self,
        document: bytes | str | etree._ElementTree | etree._Element,
        *,
        source: str = "document",
    ) -> ValidationResult:
        """Validate one document and return every failed assert.

        :raises UnsafeDocument: the bytes carry a DTD/entities or are too large.
        :raises DocumentError: the bytes are not well-formed XML.
        """
        if isinstance(document, etree._ElementTree):
            tree = document
        elif isinstance(document, etree._Element):
            tree = etree.ElementTree(document)
        else:
            tree = parse_xml(document, source=source)
        root = tree.getroot()
        kind = _ROOTS.get(root.tag)
        if kind is None:
            return ValidationResult(
                source,
                (
                    Assertion(
                        "UBL-ROOT",
                        "fatal",
                        f"not a UBL 2.1 Invoice or CreditNote: {root.tag}",
                        "/",
                    ),
                ),
            )
        text = etree.tostring(tree, encoding="unicode")
        # one document at a time: the schemas' error logs and Saxon are shared
        with self._lock:
            errors = list(self._xsd(tree, kind))
            node = self._processor.parse_xml(xml_text=text)
            outputs = [
                sheet.transform_to_string(xdm_node=node) for sheet in self._stylesheets
            ]
        for output in outputs:
            errors.extend(_svrl_asserts(output))
        return ValidationResult(source, tuple(errors))

    def _xsd(self, tree: etree._ElementTree, kind: str) -> Iterable[Assertion]:
        schema = self._schema(kind)
        if schema.validate(tree):
            return []
        return [
            Assertion("XSD", "fatal", err.message, f"line {err.line}")
            for err in schema.error_log
        ]


def _svrl_asserts(output: str) -> list[Assertion]:
    if "failed-assert" not in output and "successful-report" not in output:
        return []
    root = etree.fromstring(output.encode("utf-8"))
    found = []
    for element in root.iter(f"{_SVRL}failed-assert", f"{_SVRL}successful-report"):
        message = " ".join(
            "".join(element.findtext(f"{_SVRL}text") or "").split()
        ).strip()
        found.append(
            Assertion(
                rule=element.get("id") or "",
                flag=element.get("flag") or "fatal",
                message=message,
                location=element.get("location") or "",
            )
        )
    return found


_validators: dict[Path, Validator] = {}
_validators_lock = threading.Lock()


def get_validator(rules_dir: str | Path | None = None) -> Validator:
    """The process-wide validator for a rules directory, compiled on first use."""
    path = find_rules_dir(rules_dir)
    with _validators_lock:
        validator = _validators.get(path)
        if validator is None:
            validator = _validators[path] = Validator(path)
        return validator

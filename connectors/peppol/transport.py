"""Access-point transports: how UBL documents leave and arrive.

A small company does not run its own Peppol access point (AS4 needs a certified AP
and OpenPeppol PKI), so the connector talks to a provider through
:class:`AccessPoint`, with two implementations:

- :class:`RestAccessPoint`: a REST provider shaped like the common ones (Storecove,
  Recommand, Digiteal): Bearer API key; participant check; submit with an
  ``Idempotency-Key`` header; look-up by document number; status; inbox; mark-read.
  The paths are those of our sandbox (see ``sandbox.py``) and can be adapted per
  provider by subclassing and overriding :attr:`RestAccessPoint.paths`.
- :class:`DirectoryTransport`: drop outgoing UBL in a folder and pick incoming UBL
  up from another, for accountants' tools that import files.

Every HTTP call has a timeout; errors land on the kernel tree (retryable network,
timeout, 429 and 5xx; permanent 4xx with the access point's rule ids on 422).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, NoReturn, Protocol, runtime_checkable

import requests

from .errors import (
    AccessPointAuthError,
    AccessPointNetworkError,
    AccessPointNotFound,
    AccessPointRateLimited,
    AccessPointRejected,
    AccessPointTimeout,
    AccessPointUnavailable,
)

__all__ = [
    "AccessPoint",
    "DirectoryTransport",
    "InboxItem",
    "RestAccessPoint",
    "Submission",
]

_logger = logging.getLogger(__name__)

DocumentKind = Literal["invoice", "credit_note"]


@dataclass(frozen=True)
class Submission:
    """An outgoing document as the access point tracks it.

    ``status``: ``accepted`` (queued), ``sent``/``delivered`` (AS4 receipt) or
    ``failed`` (``message`` says why).
    """

    id: str
    status: str
    number: str | None = None
    recipient: str | None = None
    message: str = ""


@dataclass(frozen=True)
class InboxItem:
    """An incoming document waiting in the inbox."""

    id: str
    document: bytes
    sender: str | None = None
    received_at: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class AccessPoint(Protocol):
    """What the connector needs from an access point."""

    def ping(self) -> str:
        """Reach the access point; return a short description of it."""
        ...

    def check_participant(self, participant_id: str) -> bool | None:
        """Whether the participant can receive invoices (None: cannot tell)."""
        ...

    def find(self, number: str) -> Submission | None:
        """The earlier submission of the document with this number, if any."""
        ...

    def submit(
        self,
        document: bytes,
        *,
        number: str,
        recipient: str,
        kind: DocumentKind,
        idempotency_key: str,
    ) -> Submission: ...

    def status(self, submission_id: str) -> Submission: ...

    def inbox(self) -> list[InboxItem]: ...

    def mark_read(self, item_id: str) -> None: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------ REST


class RestAccessPoint:
    """A REST access-point provider.

    :param base_url: the provider's API root (``https://…/api``).
    :param api_key: sent as ``Authorization: Bearer …``; never logged.
    :param session: injected HTTP session; closed only when created here.
    :param timeout: seconds per call (connect and read).
    """

    #: Paths relative to ``base_url``; ``{id}`` is filled in.
    paths: ClassVar[dict[str, str]] = {
        "me": "/v1/me",
        "verify": "/v1/participants/verify",
        "documents": "/v1/documents",
        "document": "/v1/documents/{id}",
        "inbox": "/v1/inbox",
        "read": "/v1/inbox/{id}/read",
    }

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str,
        session: requests.Session | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_session = session is None
        self._session = session or requests.Session()
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
        }
        self._timeout = timeout

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        record: str | None = None,
    ) -> Any:
        url = self.base_url + path
        try:
            response = self._session.request(
                method,
                url,
                json=json,
                params=params,
                headers={**self._headers, **(headers or {})},
                timeout=self._timeout,
            )
        except requests.Timeout as err:
            raise AccessPointTimeout(
                f"{method} {path}: no answer in {self._timeout} s", record=record
            ) from err
        except requests.RequestException as err:
            raise AccessPointNetworkError(
                f"{method} {path}: {err.__class__.__name__}", record=record
            ) from err
        _logger.debug("%s %s -> %s", method, path, response.status_code)
        if response.status_code < 400:
            return response.json() if response.content else None
        _raise_for(response, method, path, record)

    def ping(self) -> str:
        body = self._call("GET", self.paths["me"])
        return str((body or {}).get("name") or self.base_url)

    def check_participant(self, participant_id: str) -> bool | None:
        body = self._call(
            "POST", self.paths["verify"], json={"participant": participant_id}
        )
        registered = (body or {}).get("registered")
        return bool(registered) if registered is not None else None

    def find(self, number: str) -> Submission | None:
        body = self._call(
            "GET",
            self.paths["documents"],
            params={"direction": "outgoing", "number": number},
            record=f"invoice {number}",
        )
        items = (body or {}).get("items") or []
        matches = [i for i in items if i.get("number") == number]
        return _submission(matches[0]) if matches else None

    def submit(
        self,
        document: bytes,
        *,
        number: str,
        recipient: str,
        kind: DocumentKind,
        idempotency_key: str,
    ) -> Submission:
        body = self._call(
            "POST",
            self.paths["documents"],
            json={
                "recipient": recipient,
                "document_type": kind,
                "number": number,
                "document": base64.b64encode(document).decode("ascii"),
            },
            headers={"Idempotency-Key": idempotency_key},
            record=f"invoice {number}",
        )
        submission = _submission(body or {})
        _logger.info(
            "peppol document %s submitted as %s (%s)",
            number,
            submission.id,
            submission.status,
        )
        return submission

    def status(self, submission_id: str) -> Submission:
        body = self._call(
            "GET", self.paths["document"].format(id=submission_id), record=submission_id
        )
        return _submission(body or {})

    def inbox(self) -> list[InboxItem]:
        body = self._call("GET", self.paths["inbox"], params={"unread": "true"})
        items = []
        for raw in (body or {}).get("items") or []:
            try:
                document = base64.b64decode(raw.get("document") or "", validate=True)
            except (ValueError, TypeError) as err:
                raise AccessPointRejected(
                    "inbox item is not base64", record=str(raw.get("id"))
                ) from err
            items.append(
                InboxItem(
                    id=str(raw["id"]),
                    document=document,
                    sender=raw.get("sender"),
                    received_at=raw.get("received_at"),
                )
            )
        return items

    def mark_read(self, item_id: str) -> None:
        self._call("POST", self.paths["read"].format(id=item_id), record=item_id)


def _submission(body: Mapping[str, Any]) -> Submission:
    return Submission(
        id=str(body.get("id") or ""),
        status=str(body.get("status") or "unknown"),
        number=body.get("number"),
        recipient=body.get("recipient"),
        message=str(body.get("message") or ""),
    )


def _raise_for(
    response: requests.Response, method: str, path: str, record: str | None
) -> NoReturn:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = str(body.get("message") or body.get("error") or response.reason or "")
    text = f"{method} {path}: HTTP {status} {message}".strip()
    details: dict[str, Any] = {"status": status}
    if status in (401, 403):
        raise AccessPointAuthError(text, record=record, details=details)
    if status == 404:
        raise AccessPointNotFound(text, record=record, details=details)
    if status == 429:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        raise AccessPointRateLimited(
            text, retry_after=retry_after, record=record, details=details
        )
    if status >= 500:
        raise AccessPointUnavailable(text, record=record, details=details)
    errors = body.get("errors") or []
    rules = [
        str(e.get("rule")) for e in errors if isinstance(e, dict) and e.get("rule")
    ]
    details["errors"] = errors
    raise AccessPointRejected(text, rules=rules, record=record, details=details)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


# ------------------------------------------------------------------- directory

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class DirectoryTransport:
    """Outgoing UBL files dropped in ``outbox``, incoming picked up from ``inbox``.

    Each outgoing file is written atomically (temporary name, then rename) as
    ``<number>.xml``; a second submit of the same number finds the file and does not
    write again. Incoming ``*.xml`` files are moved to ``inbox/processed`` once
    marked read. Participant checks cannot be answered (``None``).
    """

    def __init__(self, outbox: str | Path, inbox: str | Path) -> None:
        self.outbox = Path(outbox)
        self.inbox_dir = Path(inbox)
        self.outbox.mkdir(parents=True, exist_ok=True)
        self.inbox_dir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        return None

    def ping(self) -> str:
        for folder in (self.outbox, self.inbox_dir):
            if not os.access(folder, os.W_OK):
                raise AccessPointAuthError(
                    f"folder {folder} is not writable", record=str(folder)
                )
        return f"folders {self.outbox} / {self.inbox_dir}"

    def check_participant(self, participant_id: str) -> bool | None:
        return None

    def _path(self, number: str) -> Path:
        safe = _UNSAFE_NAME.sub("_", number).strip("._") or "document"
        return self.outbox / f"{safe}.xml"

    def find(self, number: str) -> Submission | None:
        path = self._path(number)
        if not path.exists():
            return None
        return Submission(id=path.name, status="delivered", number=number)

    def submit(
        self,
        document: bytes,
        *,
        number: str,
        recipient: str,
        kind: DocumentKind,
        idempotency_key: str,
    ) -> Submission:
        path = self._path(number)
        if path.exists():
            if path.read_bytes() != document:
                raise AccessPointRejected(
                    f"{path.name} already exists with other content",
                    record=f"invoice {number}",
                )
            return Submission(id=path.name, status="delivered", number=number)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(document)
        os.replace(tmp, path)
        _logger.info("peppol document %s written to %s", number, path)
        return Submission(
            id=path.name, status="delivered", number=number, recipient=recipient
        )

    def status(self, submission_id: str) -> Submission:
        path = self.outbox / Path(submission_id).name
        if not path.exists():
            raise AccessPointNotFound(
                f"{submission_id} is not in {self.outbox}", record=submission_id
            )
        return Submission(id=path.name, status="delivered", number=path.stem)

    def inbox(self) -> list[InboxItem]:
        items = []
        for path in sorted(self.inbox_dir.iterdir()):
            if path.is_file() and path.suffix.lower() == ".xml":
                content = path.read_bytes()
                received = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                items.append(
                    InboxItem(
                        id=path.name,
                        document=content,
                        received_at=received.isoformat(),
                        extra={"sha256": hashlib.sha256(content).hexdigest()},
                    )
                )
        return items

    def mark_read(self, item_id: str) -> None:
        source = self.inbox_dir / Path(item_id).name
        if not source.exists():
            return  # already taken: marking read twice is harmless
        done = self.inbox_dir / "processed"
        done.mkdir(exist_ok=True)
        os.replace(source, done / source.name)

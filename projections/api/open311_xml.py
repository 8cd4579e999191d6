"""Open311's wire format: answers and errors as JSON, or as XML documents with GeoReport v2's element names."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from xml.etree import ElementTree as ET

from fastapi import Request
from starlette.responses import Response

from engine.errors import ConcurrencyConflict, DuplicateCommand, GridloopError, IllegalTransition
from projections.api.problems import AccessDenied, Unauthenticated, log_refusal

FORMATS = ("json", "xml")
"""The formats, given as the path's suffix (services.json, requests.xml)."""
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'
ITEM_TAGS: Mapping[str, str] = {
    "services": "service",
    "service_requests": "request",
    "attributes": "attribute",
    "values": "value",
    "errors": "error",
}
"""The element each member of a list is written as, by the list's own element."""

# Characters XML 1.0 cannot carry even escaped: ElementTree would write them raw and the document would not parse.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class Open311Error(GridloopError):
    """A refusal with its own HTTP status (an unknown service, request or format is 404, not 400)."""

    def __init__(self, status: int, description: str) -> None:
        self.status = status
        super().__init__(description)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise Open311Error(404, f"format {fmt!r}: GeoReport v2 answers in {' or '.join(FORMATS)}")
    return fmt


def answer(fmt: str, root: str, value: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``value`` as JSON, or as XML under ``root`` (JSON has no root: a list is the document)."""
    if fmt == "xml":
        return Response(document(root, value), status, headers=headers, media_type="text/xml")
    return Response(json.dumps(value, ensure_ascii=False), status, headers=headers, media_type="application/json")


def failure(request: Request, fmt: str, exc: GridloopError) -> Response:
    """An error as GeoReport has it, ``[{"code": …, "description": …}]``, under the same HTTP status; refusals of
    a key or a right are logged (with the principal, never the key)."""
    if isinstance(exc, Open311Error):
        status = exc.status
    elif isinstance(exc, Unauthenticated):
        status = 401
    elif isinstance(exc, AccessDenied):
        status = 403
    elif isinstance(exc, DuplicateCommand | ConcurrencyConflict | IllegalTransition):
        status = 409
    else:
        status = 400
    if status in (401, 403):
        log_refusal(request, status, str(exc))
    headers = {"WWW-Authenticate": 'Bearer realm="gridloop"'} if status == 401 else None
    shown = fmt if fmt in FORMATS else "json"
    return answer(shown, "errors", [{"code": status, "description": str(exc)}], status, headers)


def document(root: str, value: Any) -> bytes:
    """``value`` (JSON-ready data: dicts, lists, text, numbers, booleans, None) as an XML document under ``root``."""
    return DECLARATION + ET.tostring(_element(root, value), encoding="unicode").encode("utf-8")


def _element(tag: str, value: Any) -> ET.Element:
    element = ET.Element(tag)
    if isinstance(value, Mapping):
        element.extend(_element(key, member) for key, member in value.items())
    elif isinstance(value, list | tuple):
        item = ITEM_TAGS.get(tag, "item")
        element.extend(_element(item, member) for member in value)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = _NOT_XML.sub("", str(value))
    return element

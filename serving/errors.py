"""Domain errors of the serving service and the one place they become HTTP.

Request validation, the model loader and the predict path raise these; the
service turns any of them into a status code and a JSON body with
``http_response`` and nowhere else, so a client error can never leak out as
a 5xx.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

from .contract import MODEL_REJECTED


class ServingError(Exception):
    """Base class: carries what the client needs to fix the request."""

    status: HTTPStatus = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.row = row
        self.field = field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.row is not None:
            body["row"] = self.row
        if self.field is not None:
            body["field"] = self.field
        return body


class InvalidRequest(ServingError):
    """The request body does not describe a batch of Iris measurements."""

    status = HTTPStatus.BAD_REQUEST


class BatchTooLarge(ServingError):
    """More rows than IRISOP_MAX_BATCH_ROWS allows."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodyTooLarge(ServingError):
    """The body is over the byte limit derived from IRISOP_MAX_BATCH_ROWS; refused unread."""

    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class BodyTimeout(ServingError):
    """The client did not deliver the whole body within IRISOP_BODY_TIMEOUT."""

    status = HTTPStatus.REQUEST_TIMEOUT


class MethodNotAllowed(ServingError):
    status = HTTPStatus.METHOD_NOT_ALLOWED


class UnsupportedMediaType(ServingError):
    """The body is not sent as application/json (anything else, or no Content-Type)."""

    status = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class ModelNotReady(ServingError):
    """The model failed its start-up checks; the message is the reason."""

    status = HTTPStatus.SERVICE_UNAVAILABLE


class ModelLoadError(Exception):
    """A start-up check of the model artifact failed (not a request error).

    ``kind`` says whether retrying can help: a contract refusal kind
    (``MODEL_REJECTED``, ...) for a permanent failure, None for a transient
    one. It goes into the "model not ready" log line the operator reads
    (serving/contract.py, NOT_READY_MARKER).
    """

    def __init__(self, message: str, kind: str | None = MODEL_REJECTED) -> None:
        super().__init__(message)
        self.kind = kind


def http_response(exc: ServingError) -> tuple[int, dict[str, Any]]:
    """Status code and JSON body for a domain error: the single mapping."""
    return int(exc.status), exc.body()

"""Every error the service reports on purpose, each with its HTTP status and a stable problem type.

    ServeAppError                    500  internal        (root; never raised bare for bad input)
    ├── BadRequest                   400  bad-request
    │   ├── InvalidBase64            400  invalid-base64
    │   ├── InvalidPageRange         400  invalid-page-range
    │   ├── UnsupportedLanguage      400  unsupported-language
    │   ├── ChatUnavailable          400  chat-unavailable
    │   ├── UrlNotAllowed            400  url-not-allowed       (SSRF guard)
    │   └── StorageNotConfigured     400  storage-not-configured (store, s3_uri, jobs)
    ├── Unauthorized                 401  unauthorized         (API keys configured; WWW-Authenticate)
    ├── NotFound                     404  not-found            (an s3_uri, a job)
    │   └── ModelNotFound            404  model-not-found
    ├── BodyTimeout                  408  body-timeout         (the body did not arrive in time)
    ├── JobConflict                  409  job-conflict         (a finished job's cancel, and so on)
    ├── PayloadTooLarge              413  payload-too-large
    │   ├── TooManyPages             413  too-many-pages
    │   └── PageTooLarge             413  page-too-large
    ├── UnsupportedMediaType         415  unsupported-media-type
    ├── RateLimited                  429  rate-limited         (one API key's share; Retry-After)
    ├── HeadersTooLarge              431  headers-too-large
    ├── UnprocessableDocument        422  unprocessable-document
    │   └── UnfetchableUrl           422  unfetchable-url
    ├── ServiceUnavailable           503  service-unavailable   (Retry-After)
    │   ├── NotReady                 503  not-ready
    │   ├── Overloaded               503  overloaded
    │   └── StorageUnavailable       503  storage-unavailable
    ├── DeadlineExceeded             504  deadline-exceeded
    └── ModelError                   500  model-error          (engine failed on valid input)

Each exception passes all of its constructor arguments to ``Exception.__init__`` so that it
survives pickling across Ray actors and is re-raised with its own type in the caller.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

PROBLEM_BASE = "https://serve-app.dev/problems/"


class ServeAppError(Exception):
    status: int = 500
    type: str = "internal"
    title: str = "Internal error"
    retry_after_s: float | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem(self, request_id: str | None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": PROBLEM_BASE + self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if request_id:
            body["request_id"] = request_id
        return body


class BadRequest(ServeAppError):
    status, type, title = 400, "bad-request", "Bad request"


class InvalidBase64(BadRequest):
    type, title = "invalid-base64", "File is not valid base64"


class InvalidPageRange(BadRequest):
    type, title = "invalid-page-range", "Invalid page range"


class UnsupportedLanguage(BadRequest):
    type, title = "unsupported-language", "Language not available"


class ChatUnavailable(BadRequest):
    type, title = "chat-unavailable", "No chat model is deployed"


class UrlNotAllowed(BadRequest):
    type, title = "url-not-allowed", "URL not allowed"


class StorageNotConfigured(BadRequest):
    type, title = "storage-not-configured", "No object storage is configured"


class Unauthorized(ServeAppError):
    status, type, title = 401, "unauthorized", "API key required"


class NotFound(ServeAppError):
    status, type, title = 404, "not-found", "Not found"


class ModelNotFound(NotFound):
    type, title = "model-not-found", "Model not loaded"


class BodyTimeout(ServeAppError):
    status, type, title = 408, "body-timeout", "The request body did not arrive in time"


class JobConflict(ServeAppError):
    status, type, title = 409, "job-conflict", "The job is not in a state for this"


class PayloadTooLarge(ServeAppError):
    status, type, title = 413, "payload-too-large", "Document too large"


class TooManyPages(PayloadTooLarge):
    type, title = "too-many-pages", "Too many pages"


class PageTooLarge(PayloadTooLarge):
    type, title = "page-too-large", "Page has too many pixels"


class UnsupportedMediaType(ServeAppError):
    status, type, title = 415, "unsupported-media-type", "Unsupported document type"


class RateLimited(ServeAppError):
    status, type, title = 429, "rate-limited", "Too many requests for this API key"

    def __init__(self, detail: str, retry_after_s: float) -> None:
        Exception.__init__(self, detail, retry_after_s)
        self.detail = detail
        self.retry_after_s = retry_after_s


class HeadersTooLarge(ServeAppError):
    status, type, title = 431, "headers-too-large", "Request headers too large"


class UnprocessableDocument(ServeAppError):
    status, type, title = 422, "unprocessable-document", "Document cannot be read"


class UnfetchableUrl(UnprocessableDocument):
    type, title = "unfetchable-url", "The document could not be fetched"


class ServiceUnavailable(ServeAppError):
    status, type, title = 503, "service-unavailable", "Service unavailable"
    retry_after_s = 5.0

    def __init__(self, detail: str, retry_after_s: float = 5.0) -> None:
        Exception.__init__(self, detail, retry_after_s)
        self.detail = detail
        self.retry_after_s = retry_after_s


class NotReady(ServiceUnavailable):
    type, title = "not-ready", "Models are not loaded yet"


class Overloaded(ServiceUnavailable):
    type, title = "overloaded", "Service is overloaded"


class StorageUnavailable(ServiceUnavailable):
    type, title = "storage-unavailable", "Object storage is unreachable"


class DeadlineExceeded(ServeAppError):
    status, type, title = 504, "deadline-exceeded", "Request deadline exceeded"


class ModelError(ServeAppError):
    type, title = "model-error", "Model failed"


@contextmanager
def unreadable(what: str) -> Iterator[None]:
    """Decoders of untrusted bytes raise all sorts (OSError, SyntaxError, KeyError, PdfiumError...)."""
    try:
        yield
    except ServeAppError:
        raise
    except Exception as exc:
        raise UnprocessableDocument(f"{what}: {type(exc).__name__}: {exc}") from None

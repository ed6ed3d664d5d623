"""Errors with TensorFlow status codes, mapped to HTTP the way TF Serving maps them."""

from __future__ import annotations

# tensorflow/serving model_servers/http_server.cc, ToHTTPStatusCode.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "PERMISSION_DENIED": 403,
    "UNAUTHENTICATED": 401,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
}


class ServingError(Exception):
    """A request failed with a TensorFlow status ``code`` (e.g. ``"INVALID_ARGUMENT"``).

    ``http_status`` is the HTTP code TF Serving would answer; ``message`` is sent as
    ``{"error": message}``.
    """

    def __init__(self, code, message):
        super().__init__(message)
        if code not in HTTP_STATUS:
            raise ValueError(f"Unknown status code {code!r}.")
        self.code = code
        self.message = message

    @property
    def http_status(self):
        return HTTP_STATUS[self.code]


def invalid(message):
    """A ``ServingError`` with code INVALID_ARGUMENT (HTTP 400)."""
    return ServingError("INVALID_ARGUMENT", message)

"""The error tree: each error maps to exactly one outcome.

MailfoldError
├── Rejected        401  the caller is not who it claims (bad signature, credentials)
├── Forbidden       403  authenticated, but not from an allowed address
│   └── Disabled    403  the account is disabled (`mailfold accounts disable`)
├── BadInput        400  the request names something invalid (each problem listed)
├── UnsupportedMediaType 415  the Event API takes JSON only
├── TooLarge        413  the body (or its record) exceeds the configured maximum
├── RequestTimeout  408  the body did not arrive in time: the sender may retry
├── NotFound        404  nothing this account owns answers to that
└── Unavailable     503  a dependency (the broker, the database) did not answer: retry later
    └── CredentialsUnreadable  503  stored provider credentials do not open with this
                                    MAILFOLD_SECRET_KEY: ours to fix, so never a 4xx
ParseError              an unreadable record: sent to mailfold.dlq with the message as reason
"""

from __future__ import annotations

from typing import Any


class MailfoldError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


class Rejected(MailfoldError):
    status = 401
    code = "unauthorized"


class Forbidden(MailfoldError):
    status = 403
    code = "forbidden"


class Disabled(Forbidden):
    code = "account_disabled"


class BadInput(MailfoldError):
    status = 400
    code = "bad_request"


class TooLarge(MailfoldError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(MailfoldError):
    status = 415
    code = "unsupported_media_type"


class RequestTimeout(MailfoldError):
    status = 408
    code = "request_timeout"


class NotFound(MailfoldError):
    status = 404
    code = "not_found"


class Unavailable(MailfoldError):
    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialsUnreadable(Unavailable):
    code = "credentials_unreadable"


class ParseError(Exception):
    """A raw record no adapter can read; the message is the dead-letter reason."""

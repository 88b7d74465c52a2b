"""One error hierarchy for the whole package.

Permanent errors mean the request itself is wrong (retrying the same request will
fail again); retryable errors mean a dependency was unavailable (retrying later may
succeed). Edge modules translate third-party exceptions into these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    """One rejected field: where it is (dotted path), the rule it breaks, what was given."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class BridgeError(Exception):
    """Base of every error gitops-bridge raises on purpose."""

    retryable = False
    status = 500

    def __init__(self, message: str, *, problems: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.problems = tuple(problems)

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {
            "error": type(self).__name__,
            "message": self.message,
            "retryable": self.retryable,
        }
        if self.problems:
            body["problems"] = [{"field": p.field, "message": p.message} for p in self.problems]
        return body


class InvalidRequest(BridgeError):
    """The request is malformed or breaks a validation rule (names the field and the rule)."""

    status = 422

    @classmethod
    def of(cls, problems: Sequence[FieldProblem]) -> InvalidRequest:
        return cls("; ".join(str(p) for p in problems), problems=problems)

    @classmethod
    def field(cls, field: str, message: str) -> InvalidRequest:
        return cls.of([FieldProblem(field, message)])


class BadRequest(BridgeError):
    """The request could not be read at all (not JSON, wrong content type)."""

    status = 400


class QuotaExceeded(BridgeError):
    """The change does not fit the group's quota; says what is used, requested and allowed."""

    status = 422


class NotFound(BridgeError):
    status = 404


class Unauthenticated(BridgeError):
    status = 401


class Forbidden(BridgeError):
    status = 403


class Conflict(BridgeError):
    """The request conflicts with the current state (exists already, revert conflicts...)."""

    status = 409


class TooManyRequests(BridgeError):
    """A limit on what one caller (or everyone) may hold open at once is reached; retry
    after ``retry_after`` seconds, or once something was closed."""

    retryable = True
    status = 429

    def __init__(
        self, message: str, *, problems: Sequence[FieldProblem] = (), retry_after: int = 5
    ) -> None:
        super().__init__(message, problems=problems)
        self.retry_after = retry_after


class RepoUnavailable(BridgeError):
    """The Git remote could not be read or written; nothing was changed."""

    retryable = True
    status = 503


class ClusterUnavailable(BridgeError):
    retryable = True
    status = 503


class ResourceExpired(ClusterUnavailable):
    """The API server no longer keeps the resourceVersion (or continue token) asked for
    (410 Gone): the client lists again from the start."""


class RegistryUnavailable(BridgeError):
    """The image registry could not be reached or answered with a server error."""

    retryable = True
    status = 503


class ToolMissing(BridgeError):
    """An external binary (helm, kubectl) needed by the command was not found."""

    status = 500

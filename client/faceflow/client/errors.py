"""Typed errors: one class per gRPC status a faceflow call answers with, carrying the server's sentence.

Every method of the clients raises these instead of `grpc.RpcError`; `code` is the gRPC status and
`details` the server's one-sentence explanation ("the token has expired; get a new one").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import grpc

if TYPE_CHECKING:
    from faceflow.client.models import Progress


class FaceflowError(Exception):
    """Base of every error the client raises. `code` is the gRPC status (None for an outcome the
    client reports itself, like a failed job); `details` the server's sentence."""

    default_code: ClassVar[grpc.StatusCode | None] = None

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.code = code if code is not None else self.default_code


class InvalidArgument(FaceflowError, ValueError):
    """The request is wrong: a malformed id, a bad option, a file that is not a video."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FaceflowError, LookupError):
    """A named thing (episode, job, upload session, artifact) does not exist."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FaceflowError):
    """Creating something that is there already (an episode, without replace_video)."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(FaceflowError):
    """The caller is known, but its role does not allow the call."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(FaceflowError):
    """No token, or one that cannot be verified (expired, wrong issuer or audience)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(FaceflowError):
    """Well formed, but the system is not in a state to serve it (no run yet, wrong upload offset)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(FaceflowError):
    """A limit was reached (size, free space, open uploads, rate): smaller or later may succeed."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(FaceflowError):
    """The service (or one it needs) cannot be reached, after the client's retries."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FaceflowError):
    """The call did not finish within its deadline (Client(timeout_s=...))."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(FaceflowError):
    """The call was cancelled."""

    default_code = grpc.StatusCode.CANCELLED


class Internal(FaceflowError):
    """The service failed unexpectedly (INTERNAL, UNKNOWN or DATA_LOSS; `code` tells which)."""

    default_code = grpc.StatusCode.INTERNAL


class JobError(FaceflowError):
    """A job ended without succeeding; `progress` is its last state, `details` the job's message."""

    def __init__(self, job_id: str, details: str, progress: Progress | None = None) -> None:
        super().__init__(details)
        self.job_id = job_id
        self.progress = progress

    def __str__(self) -> str:
        return f"job {self.job_id} {self._verb}: {self.details or 'no reason given'}"

    _verb: ClassVar[str] = "ended"


class JobFailed(JobError):
    """The job failed (`details`: why, as the orchestrator says)."""

    _verb = "failed"


class JobCancelled(JobError):
    """The job was cancelled (by `cancel()` or another client)."""

    _verb = "was cancelled"


_BY_CODE: dict[grpc.StatusCode, type[FaceflowError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.DATA_LOSS: Internal,
}


def translate(error: grpc.RpcError) -> FaceflowError:
    """The typed error for a failed call, with the server's sentence (ABORTED, UNIMPLEMENTED...: the base class)."""
    code_of = getattr(error, "code", None)
    details_of = getattr(error, "details", None)
    code = code_of() if callable(code_of) else None
    details = (details_of() if callable(details_of) else None) or ""
    if not isinstance(code, grpc.StatusCode):
        return Internal(details or str(error) or "the call failed without a status")
    kind = _BY_CODE.get(code, FaceflowError)
    return kind(details or f"the call failed: {code.name}", code)

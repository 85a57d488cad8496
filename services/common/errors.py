"""Domain errors, each mapped to one gRPC status (see services.common.grpc_errors).

Every message is a sentence a person can act on: what was wrong, with which value.
"""

from __future__ import annotations


class FaceflowError(Exception):
    """Base class; never raised directly."""


class InvalidArgument(FaceflowError):
    """The request itself is wrong (malformed id, bad option, a file that is not a video)."""


class NotFound(FaceflowError):
    """A named thing (episode, job, person, file) does not exist."""


class FailedPrecondition(FaceflowError):
    """The request is well formed but the system is not in a state to serve it (model missing...)."""


class AlreadyExists(FaceflowError):
    """Creating something that is already there."""


class Unavailable(FaceflowError):
    """A dependency (another service, the store) cannot be reached; retrying may help."""


class Cancelled(FaceflowError):
    """The work was cancelled by a client."""


class Unauthenticated(FaceflowError):
    """The call carries no credentials, or credentials that cannot be verified (expired, foreign key)."""


class PermissionDenied(FaceflowError):
    """The caller is known but its role does not allow this call."""


class ResourceExhausted(FaceflowError):
    """A limit was reached (size, free space, open uploads, rate): smaller or later may succeed."""

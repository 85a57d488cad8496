"""The one translation layer between domain errors and gRPC status codes, both ways."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from services.common import errors

_TO_STATUS: dict[type[errors.FaceflowError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_FROM_STATUS = {code: cls for cls, code in _TO_STATUS.items()}
_FROM_STATUS[grpc.StatusCode.DEADLINE_EXCEEDED] = errors.Unavailable


def status_for(error: errors.FaceflowError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in _TO_STATUS:
            return _TO_STATUS[cls]  # type: ignore[index]
    return grpc.StatusCode.INTERNAL


def from_rpc_error(error: grpc.RpcError, service: str) -> errors.FaceflowError:
    """Turn a failed call into the domain error it stands for, keeping the server's sentence."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return from_status(code, details, service)


def from_status(code: grpc.StatusCode | None, details: str, service: str) -> errors.FaceflowError:
    """The domain error a gRPC status stands for, with the server's sentence."""
    cls = _FROM_STATUS.get(code) if code is not None else None
    if cls is None:
        return errors.Unavailable(f"{service} failed ({code.name if code else 'UNKNOWN'}): {details}")
    if cls is errors.Unavailable:
        return cls(f"{service} is unavailable: {details}")
    return cls(details or f"{service} returned {code.name if code else 'UNKNOWN'}")


@contextmanager
def translate_rpc_errors(service: str) -> Iterator[None]:
    """Calls to another service inside this block raise domain errors instead of grpc.RpcError."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error, service) from None

"""Every gRPC status becomes one typed error carrying the server's sentence, on every call."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from faceflow.client import (
    AlreadyExists,
    Cancelled,
    Client,
    DeadlineExceeded,
    FaceflowError,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    JobCancelled,
    JobFailed,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from faceflow.client.errors import translate

from tests.client.fakes import Servers, serve

Code = grpc.StatusCode


class _Failed(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode | None, details: str | None) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (Code.INVALID_ARGUMENT, InvalidArgument),
        (Code.OUT_OF_RANGE, InvalidArgument),
        (Code.NOT_FOUND, NotFound),
        (Code.ALREADY_EXISTS, AlreadyExists),
        (Code.PERMISSION_DENIED, PermissionDenied),
        (Code.UNAUTHENTICATED, Unauthenticated),
        (Code.FAILED_PRECONDITION, FailedPrecondition),
        (Code.RESOURCE_EXHAUSTED, ResourceExhausted),
        (Code.UNAVAILABLE, Unavailable),
        (Code.DEADLINE_EXCEEDED, DeadlineExceeded),
        (Code.CANCELLED, Cancelled),
        (Code.INTERNAL, Internal),
        (Code.UNKNOWN, Internal),
        (Code.DATA_LOSS, Internal),
    ],
)
def test_each_status_has_its_class(code: grpc.StatusCode, kind: type[FaceflowError]) -> None:
    error = translate(_Failed(code, "the sentence"))
    assert type(error) is kind and error.code is code and error.details == "the sentence"
    assert str(error) == "the sentence"


def test_other_statuses_are_the_base_class_and_a_missing_sentence_names_the_status() -> None:
    error = translate(_Failed(Code.ABORTED, None))
    assert type(error) is FaceflowError and error.code is Code.ABORTED and "ABORTED" in error.details
    assert isinstance(translate(_Failed(None, "odd")), Internal)


def test_job_errors_read_as_a_sentence() -> None:
    failed = JobFailed("job-1", "the detector ran out of memory")
    assert str(failed) == "job job-1 failed: the detector ran out of memory" and failed.code is None
    assert str(JobCancelled("job-2", "")) == "job job-2 was cancelled: no reason given"


@pytest.fixture()
def servers() -> Iterator[Servers]:
    with serve() as running:
        yield running


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (Code.PERMISSION_DENIED, PermissionDenied),
        (Code.UNAUTHENTICATED, Unauthenticated),
        (Code.NOT_FOUND, NotFound),
        (Code.INVALID_ARGUMENT, InvalidArgument),
    ],
)
def test_calls_raise_the_typed_error_with_the_servers_sentence(
    servers: Servers, code: grpc.StatusCode, kind: type[FaceflowError]
) -> None:
    sentence = "rita is a viewer; SubmitJob needs the reviewer role"
    for method in ("SubmitJob", "GetScreenTime", "WatchJob"):
        servers.orchestrator.failures[method].append((code, sentence))
    servers.shared_storage.failures["GetArtifact"].append((code, sentence))
    with Client(servers.address, token="t") as client:
        for call in (
            lambda: client.submit("ep1"),
            lambda: client.screen_time("ep1"),
            lambda: next(iter(client.watch("job-1"))),
            lambda: client.tracks("ep1"),
        ):
            with pytest.raises(kind) as caught:
                call()
            assert caught.value.details == sentence and caught.value.code is code
            assert isinstance(caught.value.__cause__, grpc.RpcError)


def test_an_unreachable_address_is_unavailable_after_the_retries() -> None:
    with Client("127.0.0.1:1", timeout_s=10) as client, pytest.raises(Unavailable):
        client.job("job-1")

"""inprocess_clients' call plumbing (no models): stubs call servicers directly, streams cancel cleanly."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from bench.inprocess import FakeContext, InProcessAbort, InProcessStub


class _Servicer:
    def __init__(self) -> None:
        self.closed = False

    def Echo(self, request: str, context: FakeContext) -> str:
        return request.upper()

    def Count(self, request: int, context: FakeContext) -> Iterator[int]:
        try:
            for i in range(request):
                if not context.is_active():
                    return
                yield i
        finally:
            self.closed = True

    def Fail(self, request: str, context: FakeContext) -> str:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
        return ""


def _stub(servicer: _Servicer) -> InProcessStub:
    return InProcessStub(
        "test.Service",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(servicer.Echo),
            "Count": grpc.unary_stream_rpc_method_handler(servicer.Count),
            "Fail": grpc.unary_unary_rpc_method_handler(servicer.Fail),
        },
    )


def test_unary_call_passes_objects_through() -> None:
    assert _stub(_Servicer()).Echo("abc", timeout=5) == "ABC"


def test_stream_call_iterates_and_cancel_runs_finally() -> None:
    servicer = _Servicer()
    call = _stub(servicer).Count(100)
    assert [next(call), next(call)] == [0, 1]
    assert not servicer.closed
    call.cancel()
    assert servicer.closed
    with pytest.raises(StopIteration):
        next(call)


def test_abort_raises() -> None:
    with pytest.raises(InProcessAbort, match="INVALID_ARGUMENT: bad"):
        _stub(_Servicer()).Fail("x")

"""InferenceBackend served by a Triton Inference Server over gRPC (tritonclient).

Why it looks the way it does:
- It checks at construction that the server is live, the model ready and, when asked, that the
  served file is the manifest's (sha256 in the config's parameters, written by
  deploy/triton/make_repo.py): a service must not report SERVING in front of a missing or different
  model, since embeddings carry the manifest's model id.
- Input and output names, data type and max_batch_size come from Triton's metadata and config, so a
  repository produced by make_repo needs nothing configured twice.
- Batches larger than the model's max_batch_size are split here: callers (detector, embedder) choose
  their batch from their own latency/memory trade-off, not from the server's limits.
- UNAVAILABLE (server restarting, pod rescheduled) is retried by the channel, under the one retry
  policy of every faceflow client (services/common/retry.py); every call has a deadline. All
  tritonclient / gRPC failures become domain errors in one place (`_domain_error`), each naming the
  URL and the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any, TypeVar

import grpc
import numpy as np
import tritonclient.grpc as tgrpc
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from services.common.errors import FaceflowError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.common.retry import MAX_ATTEMPTS, RETRY_OPTIONS

T = TypeVar("T")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # larger batches are split into several requests (_chunk_size)
REQUEST_HEADROOM_BYTES = 1024 * 1024  # request framing and metadata besides the tensor bytes
# Keepalive pings only while a call is in flight (Triton's default server policy rejects pings on
# idle connections unless --grpc-keepalive-permit-without-calls is set): they detect a dead peer
# behind a Kubernetes Service within keepalive_time + keepalive_timeout instead of the call deadline.
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after a Triton restart; the channel's retries rely on it.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    *RETRY_OPTIONS,
)
SHA256_PARAMETER = "faceflow_sha256"  # see deploy/triton/make_repo.py
_DEVICE_OF_KIND = MappingProxyType(
    {model_config_pb2.ModelInstanceGroup.KIND_GPU: "cuda", model_config_pb2.ModelInstanceGroup.KIND_CPU: "cpu"}
)


def _status_name(exc: InferenceServerException | grpc.RpcError) -> str:
    """'UNAVAILABLE', 'NOT_FOUND', ... from either error type ('' when the client raised it itself)."""
    if isinstance(exc, InferenceServerException):
        return (exc.status() or "").removeprefix("StatusCode.")
    code = exc.code() if hasattr(exc, "code") else None
    return code.name if code is not None else ""


class TritonBackend:
    """One model on one Triton server. Safe to call from one thread at a time, like OnnxBackend."""

    def __init__(
        self,
        url: str,
        model_name: str,
        *,
        name: str | None = None,
        device: str | None = None,
        timeout_s: float = 10.0,
        expected_sha256: str | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        """Connect and check the model; `device` "cuda" refuses a model Triton runs on CPU.

        `output_names` (the manifest's order) fixes the order of infer()'s results and is checked
        against the served model; by default the order of Triton's metadata is used.
        """
        if not url or "://" in url:
            raise InvalidArgument(f"Triton URL must be host:port of its gRPC endpoint (e.g. triton:8001), got {url!r}")
        if timeout_s <= 0:
            raise InvalidArgument(f"timeout_s must be > 0, got {timeout_s}")
        self.url = url
        self.model_name = model_name
        self.name = name or model_name
        self._timeout_s = timeout_s
        self._client = tgrpc.InferenceServerClient(url, channel_args=list(CHANNEL_OPTIONS))
        try:
            self._check_ready()
            self._describe(device, expected_sha256, output_names)
        except BaseException:
            self.close()  # a half-built backend must not leak its channel
            raise

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on `batch` (split into chunks of max_batch_size); outputs in output_names order."""
        batch = np.ascontiguousarray(batch, dtype=self._input_dtype)
        if batch.ndim == 0 or batch.shape[0] == 0:
            raise InvalidArgument(f"{self.name}: batch must have a non-empty first dimension, got shape {batch.shape}")
        step = self._chunk_size(batch)
        chunks = [self._infer_chunk(batch[i : i + step]) for i in range(0, batch.shape[0], step)]
        if len(chunks) == 1:
            return chunks[0]
        return [np.concatenate([chunk[k] for chunk in chunks]) for k in range(len(self.output_names))]

    def _chunk_size(self, batch: np.ndarray) -> int:
        """Items per request: at most max_batch_size, and few enough to fit one gRPC message.

        Eight 1280x720 float32 frames (the detector's batch) are 88 MB, over the 64 MiB limit.
        """
        by_model = self.max_batch_size if self.max_batch_size > 0 else batch.shape[0]
        by_bytes = max(1, (MAX_MESSAGE_BYTES - REQUEST_HEADROOM_BYTES) // max(1, batch[0].nbytes))
        if self.max_batch_size <= 0 and by_bytes < batch.shape[0]:
            raise InvalidArgument(
                f"{self.name}: a {batch.nbytes} byte batch exceeds the {MAX_MESSAGE_BYTES} byte message limit "
                f"and Triton model {self.model_name!r} does not batch (max_batch_size 0), so it cannot be split"
            )
        return min(by_model, by_bytes)

    def close(self) -> None:
        """Close the gRPC channel (idempotent)."""
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None

    def _infer_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        request = tgrpc.InferInput(self._input_name, list(chunk.shape), self._input_datatype)
        request.set_data_from_numpy(chunk)
        result = self._call(
            f"infer a batch of {chunk.shape[0]}",
            lambda t: self._client.infer(self.model_name, [request], outputs=self._outputs, client_timeout=t),
        )
        arrays = [result.as_numpy(n) for n in self.output_names]
        for n, array in zip(self.output_names, arrays, strict=True):
            if array is None:
                raise FailedPrecondition(f"Triton at {self.url}: {self.model_name!r} returned no output {n!r}")
        return arrays

    def _describe(self, device: str | None, expected_sha256: str | None, output_names: Sequence[str] | None) -> None:
        """Read tensor names, dtype, batch limit and device from Triton; check them against the caller's."""
        model, url = self.model_name, self.url
        metadata = self._call("read metadata", lambda t: self._client.get_model_metadata(model, client_timeout=t))
        config = self._call("read config", lambda t: self._client.get_model_config(model, client_timeout=t)).config
        if len(metadata.inputs) != 1:
            raise FailedPrecondition(
                f"Triton model {model!r} at {url} has {len(metadata.inputs)} inputs; faceflow models take one"
            )
        self._input_name = metadata.inputs[0].name
        self._input_datatype = metadata.inputs[0].datatype
        self._input_dtype = np.dtype(triton_to_np_dtype(self._input_datatype))
        served = [o.name for o in metadata.outputs]
        self.output_names = list(output_names) if output_names is not None else served
        if sorted(self.output_names) != sorted(served):
            raise FailedPrecondition(
                f"Triton model {model!r} at {url} has outputs {served}, the manifest expects {self.output_names}; "
                "regenerate the repository with deploy/triton/make_repo.py"
            )
        self._outputs = [tgrpc.InferRequestedOutput(n) for n in self.output_names]
        self.max_batch_size = int(config.max_batch_size)
        kinds = {_DEVICE_OF_KIND.get(g.kind, "auto") for g in config.instance_group}
        self.device = "cuda" if "cuda" in kinds else (kinds.pop() if len(kinds) == 1 else "auto")
        if device == "cuda" and self.device != "cuda":
            raise FailedPrecondition(
                f"device=cuda was requested for {self.name} but Triton at {url} runs {model!r} on {self.device}"
            )
        served_sha = config.parameters[SHA256_PARAMETER].string_value if SHA256_PARAMETER in config.parameters else ""
        if expected_sha256 is not None and served_sha != expected_sha256:
            raise FailedPrecondition(
                f"Triton at {url} serves {model!r} with sha256 {served_sha or 'unknown'}, the model manifest "
                f"expects {expected_sha256}: regenerate its repository with `python -m deploy.triton.make_repo`"
            )

    def _check_ready(self) -> None:
        live = self._call("check liveness", lambda t: self._client.is_server_live(client_timeout=t))
        if not live:
            raise Unavailable(f"Triton at {self.url} is not live yet; retry when its /v2/health/live passes")
        if self._call("check the model", lambda t: self._client.is_model_ready(self.model_name, client_timeout=t)):
            return
        index = self._call("list models", lambda t: self._client.get_model_repository_index(client_timeout=t))
        states = {m.name: m.state or "UNKNOWN" for m in index.models}
        listing = ", ".join(f"{n} ({s})" for n, s in sorted(states.items())) or "none"
        if self.model_name in states:
            reason = next((m.reason for m in index.models if m.name == self.model_name and m.reason), "")
            raise FailedPrecondition(
                f"Triton at {self.url} has model {self.model_name!r} but it is not ready ({states[self.model_name]}"
                f"{': ' + reason if reason else ''}); models: {listing}"
            )
        raise FailedPrecondition(f"Triton at {self.url} has no model {self.model_name!r} (models: {listing})")

    def _call(self, what: str, call: Callable[[float], T]) -> T:
        """Run `call(deadline_s)` (the channel retries UNAVAILABLE); raise domain errors."""
        try:
            return call(self._timeout_s)
        except (InferenceServerException, grpc.RpcError) as exc:
            raise self._domain_error(exc, what) from None

    def _domain_error(self, exc: InferenceServerException | grpc.RpcError, what: str) -> FaceflowError:
        """The one translation of tritonclient / gRPC failures into faceflow's domain errors."""
        status = _status_name(exc)
        message = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
        where = f"Triton at {self.url} (model {self.model_name!r}) could not {what}"
        if status == "UNAVAILABLE":
            return Unavailable(f"{where}: unreachable after {MAX_ATTEMPTS} attempts: {message}")
        if status == "DEADLINE_EXCEEDED":
            return Unavailable(f"{where} within the {self._timeout_s:g} s deadline")
        if status == "NOT_FOUND":
            return NotFound(f"{where}: {message}")
        if status == "INVALID_ARGUMENT":
            return InvalidArgument(f"{where}: {message}")
        return FailedPrecondition(f"{where}: {status or 'client error'}: {message}")

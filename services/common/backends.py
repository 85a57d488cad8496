"""Model backends behind one interface: in-process onnxruntime now, Triton later.

A backend runs one model on one batch and returns its outputs in the model's output order.
Pre- and post-processing live with the model's owner (detector, embedder), never here, so a
Triton backend can be swapped in without touching them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from services.common.errors import FailedPrecondition


class InferenceBackend(Protocol):
    """Runs one model. Stateless between calls; safe to call from one thread at a time."""

    name: str
    device: str

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a batch (first dimension = batch) and return every output, in order."""
        ...


class OnnxBackend:
    """onnxruntime in the calling process; CUDA when asked for and really present, otherwise CPU."""

    def __init__(
        self, model_path: Path, *, name: str, device: str = "cpu", threads: int = 0, spinning: bool = False
    ) -> None:
        import onnxruntime as ort  # lazy: the Triton backend must not need it

        if not model_path.is_file():
            raise FailedPrecondition(f"model file {model_path} is missing; run `make models` first")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # onnxruntime's worker threads busy-wait after each run by default. A service's other threads
        # (decoding, shot cuts, protobuf) then wait for a core the idle workers hold: on 2 cores the
        # default run on talking heads took 1.15-1.2x as long with spinning (docs/performance.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(model_path), options, providers=providers)
        active = self._session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in active:
            # Refuse to run a GPU deployment silently on CPU: it would be 20x slower and look healthy.
            raise FailedPrecondition(f"device=cuda was requested for {name} but onnxruntime offers only {active}")
        self.name = name
        self.device = device
        self._input_name = self._session.get_inputs()[0].name

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return list(self._session.run(None, {self._input_name: batch}))

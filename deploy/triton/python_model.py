"""Triton python-backend model that runs one ONNX file with onnxruntime (the `cpu-python` variant).

Copied as `<model>/1/model.py` by deploy/triton/make_repo.py. It exists because the Triton build
we can run without a GPU (PyPI nvidia-pytriton) ships only the python backend; the deployment
variant (`gpu`) uses Triton's native onnxruntime backend on the same file instead. It reads
everything (file name, input/output names, dtypes) from the model configuration, so one file
serves every model. Requests of one shape that the dynamic batcher hands over together run as one
onnxruntime call, as the native backend would.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """One onnxruntime session per model instance; Triton calls execute() from one thread."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        path = os.path.join(args["model_repository"], args["model_version"], params.get("onnx_file", "model.onnx"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self._input = config["input"][0]["name"]
        self._input_dtype = pb_utils.triton_string_to_numpy(config["input"][0]["data_type"])
        self._outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, self._input).as_numpy() for r in requests]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            groups.setdefault(tuple(array.shape[1:]), []).append(index)
        responses: list[Any] = [None] * len(requests)
        for indices in groups.values():
            batch = np.concatenate([arrays[i] for i in indices]).astype(self._input_dtype, copy=False)
            results = self._session.run([name for name, _ in self._outputs], {self._input: batch})
            start = 0
            for i in indices:
                stop = start + arrays[i].shape[0]
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(result[start:stop]).astype(dtype, copy=False))
                    for (name, dtype), result in zip(self._outputs, results, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start = stop
        return responses

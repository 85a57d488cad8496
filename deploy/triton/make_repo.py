"""Generate a Triton model repository from the faceflow model manifest.

    python -m deploy.triton.make_repo --manifest .cache/faceflow/models/manifest.json --out DIR \
        [--variant gpu|cpu-python] [--gpu-instances N] [--tensorrt] [--max-batch NAME=N ...] [--link]

Layout: `DIR/<model>/config.pbtxt` and `DIR/<model>/1/model.onnx` (+ `model.py` for cpu-python).
Tensor names, dims and data types come from the manifest (output dtypes, which the manifest does not
record, from the ONNX file itself, cross-checked by name), so a re-exported model never needs the
repository edited by hand. Each config is built as a `ModelConfig` protobuf (tritonclient ships
Triton's model_config.proto) and re-parsed after writing: a config Triton would reject fails here.
The file's sha256 goes into the config's parameters, so TritonBackend can prove that the served model
is the one whose id the embeddings carry.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from services.common.errors import FaceflowError, FailedPrecondition, InvalidArgument
from services.common.model_manifest import ModelManifest, ModelSpec, TensorSpec

VARIANTS = ("gpu", "cpu-python")
# Config parameter carrying the model file's sha256 (checked by services.common.triton).
SHA256_PARAMETER = "faceflow_sha256"
# Largest batch per model call, by task. The detector sends at most RetinaFaceSettings.max_batch (8)
# frames of one size per call and the embedder at most arcface.MAX_BATCH (64) crops; Triton may
# merge concurrent requests up to this size, and the client splits anything larger.
DEFAULT_MAX_BATCH = {"face_detection": 8, "face_embedding": 64}
# How long the dynamic batcher may hold a request waiting for company: small next to a model call
# (~5 ms embedder batch, ~20 ms detector frame on a GPU), large enough to merge concurrent callers.
MAX_QUEUE_DELAY_US = 2000
_DTYPES = {
    "float32": mc.TYPE_FP32,
    "float16": mc.TYPE_FP16,
    "float64": mc.TYPE_FP64,
    "int64": mc.TYPE_INT64,
    "int32": mc.TYPE_INT32,
    "uint8": mc.TYPE_UINT8,
    "int8": mc.TYPE_INT8,
    "bool": mc.TYPE_BOOL,
}
_ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
}
_FORMATS = {"NCHW": mc.ModelInput.FORMAT_NCHW, "NHWC": mc.ModelInput.FORMAT_NHWC}
PYTHON_MODEL = Path(__file__).with_name("python_model.py")


@dataclass(frozen=True)
class RepoOptions:
    """What differs between deployments; everything about the tensors comes from the manifest."""

    variant: str = "gpu"
    gpu_instances: int = 1
    tensorrt: bool = False
    tensorrt_precision: str = "FP16"
    max_batch: Mapping[str, int] | None = None  # per model name; default by task
    cpu_threads: int = 1  # intra-op threads per cpu-python instance
    link: bool = False  # symlink model files instead of copying (local tests only)


def _onnx_dtypes(path: Path) -> dict[str, str]:
    """Tensor name -> numpy dtype name, read from the ONNX file (the manifest omits output dtypes)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found: dict[str, str] = {}
    for arg in [*session.get_inputs(), *session.get_outputs()]:
        if arg.type not in _ONNX_TYPES:
            raise FailedPrecondition(f"{path}: tensor {arg.name!r} has type {arg.type}, unsupported here")
        found[arg.name] = _ONNX_TYPES[arg.type]
    return found


def _tensor_dtype(spec: ModelSpec, tensor: TensorSpec, onnx_dtypes: Mapping[str, str]) -> int:
    if tensor.name not in onnx_dtypes:
        raise FailedPrecondition(
            f"manifest tensor {tensor.name!r} of {spec.name} is not in {spec.file} "
            f"(file has {', '.join(onnx_dtypes)}); the manifest and the file disagree: run `make models`."
        )
    actual = onnx_dtypes[tensor.name]
    if tensor.dtype is not None and tensor.dtype != actual:
        raise FailedPrecondition(f"{spec.name}.{tensor.name}: manifest says {tensor.dtype}, {spec.file} has {actual}")
    return _DTYPES[actual]


def _dims(spec: ModelSpec, tensor: TensorSpec, batched: bool) -> list[int]:
    """Triton dims exclude the batch dimension when max_batch_size > 0."""
    if not batched:
        return list(tensor.shape)
    if not tensor.shape or tensor.shape[0] != -1:
        raise FailedPrecondition(f"{spec.name}.{tensor.name} has shape {tensor.shape}: no dynamic batch dimension")
    return list(tensor.shape[1:])


def model_config(spec: ModelSpec, onnx_dtypes: Mapping[str, str], options: RepoOptions) -> mc.ModelConfig:
    """The Triton configuration of one manifest model for one deployment variant."""
    max_batch = (options.max_batch or {}).get(spec.name, DEFAULT_MAX_BATCH.get(spec.task, 0))
    config = mc.ModelConfig(name=spec.name, max_batch_size=max_batch)
    batched = max_batch > 0
    for tensor in spec.inputs:
        item = config.input.add(
            name=tensor.name, data_type=_tensor_dtype(spec, tensor, onnx_dtypes), dims=_dims(spec, tensor, batched)
        )
        if tensor.layout in _FORMATS and len(item.dims) == 3:
            item.format = _FORMATS[tensor.layout]
    for tensor in spec.outputs:
        config.output.add(
            name=tensor.name, data_type=_tensor_dtype(spec, tensor, onnx_dtypes), dims=_dims(spec, tensor, batched)
        )
    if batched:
        preferred = sorted({size for size in (max_batch // 2, max_batch) if size > 1})
        config.dynamic_batching.preferred_batch_size.extend(preferred)
        config.dynamic_batching.max_queue_delay_microseconds = MAX_QUEUE_DELAY_US
    config.parameters[SHA256_PARAMETER].string_value = spec.sha256
    if options.variant == "gpu":
        config.platform = "onnxruntime_onnx"
        config.default_model_filename = "model.onnx"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=options.gpu_instances)
        if options.tensorrt:
            trt = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
            trt.parameters["precision_mode"] = options.tensorrt_precision
            trt.parameters["max_workspace_size_bytes"] = str(1 << 30)
            # Engines take minutes to build per input shape; cache them next to the model.
            trt.parameters["trt_engine_cache_enable"] = "1"
            trt.parameters["trt_engine_cache_path"] = "/tmp/triton_trt_cache"
    else:
        config.backend = "python"
        config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
        config.parameters["onnx_file"].string_value = "model.onnx"
        config.parameters["intra_op_threads"].string_value = str(options.cpu_threads)
    return config


def parse_config(path: Path) -> mc.ModelConfig:
    """Strictly parse a config.pbtxt with Triton's own schema (unknown fields are errors)."""
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise FailedPrecondition(f"{path} does not parse as a Triton ModelConfig: {exc}") from exc


def _place(source: Path, target: Path, link: bool) -> None:
    target.unlink(missing_ok=True)
    if link:
        target.symlink_to(source.resolve())
    else:
        shutil.copyfile(source, target)


def make_repo(manifest_path: Path, out: Path, options: RepoOptions) -> list[Path]:
    """Write (or refresh) the repository; returns the config files, each verified to parse."""
    if options.variant not in VARIANTS:
        raise InvalidArgument(f"variant must be one of {', '.join(VARIANTS)}, got {options.variant!r}")
    if options.gpu_instances < 1:
        raise InvalidArgument(f"gpu instances must be >= 1, got {options.gpu_instances}")
    manifest = ModelManifest.load(manifest_path)
    unknown = set(options.max_batch or {}) - set(manifest.names)
    if unknown:
        raise InvalidArgument(f"--max-batch names {sorted(unknown)} are not in the manifest ({manifest.names})")
    model_dir = manifest_path.parent
    written = []
    for spec in manifest.models:
        source = spec.verify(model_dir)
        config = model_config(spec, _onnx_dtypes(source), options)
        version_dir = out / spec.name / "1"
        version_dir.mkdir(parents=True, exist_ok=True)
        _place(source, version_dir / "model.onnx", options.link)
        if options.variant == "cpu-python":
            shutil.copyfile(PYTHON_MODEL, version_dir / "model.py")
        else:
            (version_dir / "model.py").unlink(missing_ok=True)
        config_path = out / spec.name / "config.pbtxt"
        config_path.write_text(text_format.MessageToString(config))
        if parse_config(config_path) != config:
            raise FailedPrecondition(f"{config_path} does not read back as written")
        written.append(config_path)
    return written


def _max_batch_flag(values: Sequence[str]) -> dict[str, int]:
    parsed = {}
    for value in values:
        name, sep, size = value.partition("=")
        if not sep or not size.isdigit():
            raise InvalidArgument(f"--max-batch takes NAME=N, got {value!r}")
        parsed[name] = int(size)
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.triton.make_repo", description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, required=True, help="CACHE/models/manifest.json")
    parser.add_argument("--out", type=Path, required=True, help="model repository directory to write")
    parser.add_argument("--variant", choices=VARIANTS, default="gpu")
    parser.add_argument("--gpu-instances", type=int, default=1, help="model instances per GPU (gpu variant)")
    parser.add_argument("--tensorrt", action="store_true", help="add the TensorRT execution accelerator (gpu)")
    parser.add_argument("--tensorrt-precision", choices=["FP32", "FP16"], default="FP16")
    parser.add_argument("--max-batch", action="append", default=[], metavar="NAME=N", help="override per model")
    parser.add_argument("--cpu-threads", type=int, default=1, help="onnxruntime threads per instance (cpu-python)")
    parser.add_argument("--link", action="store_true", help="symlink model files instead of copying them")
    args = parser.parse_args(argv)
    try:
        options = RepoOptions(
            variant=args.variant,
            gpu_instances=args.gpu_instances,
            tensorrt=args.tensorrt,
            tensorrt_precision=args.tensorrt_precision,
            max_batch=_max_batch_flag(args.max_batch),
            cpu_threads=args.cpu_threads,
            link=args.link,
        )
        written = make_repo(args.manifest, args.out, options)
    except FaceflowError as exc:
        print(f"make_repo: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"{path} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A whole episode run with detector and embedder on Triton matches the onnxruntime run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc, storage_pb2

from services.cli.stack import LocalStack
from tests.triton.conftest import TritonServer

pytestmark = pytest.mark.e2e
OPTIONS = orchestrator_pb2.RunOptions(stride=2)


def _run(stack: LocalStack, video: Path) -> None:
    with stack.channel("orchestrator") as channel:
        orchestrator = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        orchestrator.CreateEpisode(storage_pb2.CreateEpisodeRequest(ep_id="triton-run", source_path=str(video)))
        final = list(orchestrator.RunEpisode(orchestrator_pb2.SubmitJobRequest(ep_id="triton-run", options=OPTIONS)))
        assert final[-1].state == orchestrator_pb2.JOB_STATE_SUCCEEDED, final[-1].message


def _outputs(root: Path) -> tuple[str, list, dict]:
    folder = root / "episodes" / "triton-run"
    manifest = json.loads((folder / "manifest.json").read_text())
    screentime = json.loads((folder / "screentime.json").read_text())["identities"]
    return (folder / "tracks.mot.txt").read_text(), [(i["seconds"], i["intervals"]) for i in screentime], manifest


def test_triton_backed_run_matches_the_onnx_backed_run(
    triton_server: TritonServer, stack: LocalStack, media: Path, tmp_path: Path
) -> None:
    video = media / "WolfgangLanger_Pexels.mp4"
    env = {"FACEFLOW_BACKEND": "triton", "FACEFLOW_TRITON_URL": triton_server.grpc_url}
    with LocalStack(tmp_path / "triton-stack", extra_env=env) as triton_stack:
        _run(triton_stack, video)
        mot, screentime, manifest = _outputs(triton_stack.data_root)
    _run(stack, video)
    onnx_mot, onnx_screentime, onnx_manifest = _outputs(stack.data_root)
    assert (
        manifest["models"]["detector"]["backend"] == "triton"
        and onnx_manifest["models"]["detector"]["backend"] == "onnx"
    )
    assert manifest["embedding_model"] == onnx_manifest["embedding_model"]  # same model id: comparable vectors
    assert mot == onnx_mot and screentime == onnx_screentime

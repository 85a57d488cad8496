"""The faceflow-client wheel on its own: built by `make client`, installed into a fresh venv with nothing
but its dependencies (no models, OpenCV or ONNX Runtime there), it uploads the sample episode to a real
running stack with a reviewer's JWT, runs it with progress, and reads the screen time the stack reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import venv
from pathlib import Path
from typing import Any

import pytest
from faceflow.v1 import orchestrator_pb2, orchestrator_pb2_grpc

from services.cli.stack import LocalStack
from services.common.config import Settings

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EPISODE = "client-wheel"
SHOW = "client-wheel"  # its own facebank: labels no other test can change
PERSON = "Barack Obama"
# What the clean venv may hold besides the client: its dependencies and what grpcio itself needs.
ALLOWED = {"faceflow-client", "grpcio", "protobuf", "typing-extensions", "pip", "setuptools", "wheel"}

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import faceflow.client
    from faceflow.client import Client, RunOptions

    env = os.environ
    uploads, events = [], []
    with Client(env["FF_ADDR"], token=env["FF_TOKEN"], storage_address=env["FF_STORAGE"]) as client:
        episode = client.upload(env["FF_VIDEO"], env["FF_EPISODE"], show=env["FF_SHOW"],
                                on_progress=lambda sent, total: uploads.append((sent, total)))
        result = client.run(env["FF_EPISODE"], RunOptions(show=env["FF_SHOW"]),
                            on_progress=lambda p: events.append((p.state.value, p.frames_done, p.frames_total)))
        screen_time = client.screen_time(env["FF_EPISODE"])
        tracks = client.tracks(env["FF_EPISODE"])
        try:
            screen_time.to_pandas()
            pandas_error = ""
        except ImportError as error:
            pandas_error = str(error)
    print(json.dumps({
        "module": faceflow.client.__file__,
        "episode": {"ep_id": episode.ep_id, "size_bytes": episode.size_bytes, "fps": episode.fps},
        "uploads": uploads,
        "events": events,
        "run_id": result.run_id,
        "tracks": len(tracks),
        "pandas_error": pandas_error,
        "screen_time": {
            "run_id": screen_time.run_id,
            "duration_s": screen_time.duration_s,
            "rows": [[r.kind, r.identity_id, r.label, r.seconds, [list(i) for i in r.intervals]]
                     for r in screen_time],
        },
    }))
    """
)


def _run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    kwargs.setdefault("timeout", 600)
    return subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def wheel() -> Path:
    # `make client` with the stubs `make setup` generated for this venv (-o protos): remaking the venv
    # underneath a running pytest is not this test's business.
    built = _run(["make", "--no-print-directory", "-o", "protos", "client"], cwd=REPO)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-3000:]
    (path,) = sorted((REPO / "dist").glob("faceflow_client-*.whl"))
    assert f"{path.relative_to(REPO)}: " in built.stdout  # the target prints the wheel and its size
    return path


@pytest.fixture(scope="module")
def client_python(wheel: Path, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed: from a wheelhouse in the cache when it has grpcio and
    protobuf (offline), else they are downloaded once into it through pip's index."""
    folder = tmp_path_factory.mktemp("client-venv")
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    wheelhouse = settings.cache_dir / "client-wheels"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    offline = [*pip, "install", "--no-index", "--find-links", str(wheelhouse), str(wheel)]
    if _run(offline).returncode != 0:
        fetched = _run([*pip, "download", "--dest", str(wheelhouse), str(wheel)])
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        for copy in wheelhouse.glob("faceflow_client-*"):  # only the dependencies are kept there
            copy.unlink()
        installed = _run(offline)
        assert installed.returncode == 0, installed.stderr[-3000:]
    return python


def test_the_venv_holds_the_client_and_its_dependencies_only(client_python: Path) -> None:
    listed = _run([str(client_python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"])
    names = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"faceflow-client", "grpcio", "protobuf"} <= names and names <= ALLOWED, names
    absent = ("onnxruntime", "cv2", "numpy", "services")
    probe = f"import importlib.util as u; print([m for m in {absent!r} if u.find_spec(m)])"
    found = _run([str(client_python), "-c", probe], cwd=client_python.parent)
    assert found.returncode == 0 and found.stdout.strip() == "[]", found.stdout + found.stderr


@pytest.fixture(scope="module")
def video(request: pytest.FixtureRequest) -> Path:
    """The sample episode of `make sample`, or the session's own build of it."""
    made = REPO / "data" / "sample"
    if (made / "episode.mp4").is_file() and (made / "enrol" / "obama").is_dir():
        return made
    folder: Path = request.getfixturevalue("sample_episode")
    return folder


def test_upload_run_and_screen_time_through_the_wheel(
    client_python: Path, stack: LocalStack, video: Path, tmp_path: Path
) -> None:
    local = {
        **os.environ,
        "FACEFLOW_ORCHESTRATOR_ADDR": stack.address("orchestrator"),
        "FACEFLOW_STORAGE_ADDR": stack.address("storage"),
        "FACEFLOW_DATA_ROOT": str(stack.data_root),  # this machine's user, for the enrolment
    }
    images = sorted(str(p) for p in (video / "enrol" / "obama").iterdir())
    added = _run(
        [sys.executable, "-m", "services.cli.main", "facebank", "add", "--show", SHOW, "--name", PERSON, *images],
        env=local,
        cwd=REPO,
    )
    assert added.returncode == 0, added.stderr[-3000:]

    script = tmp_path / "use_client.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FACEFLOW_", "VIRTUAL_ENV"))}
    env |= {
        "FF_ADDR": stack.address("orchestrator"),
        "FF_STORAGE": stack.address("storage"),
        "FF_TOKEN": stack.issuer.mint("reviewer", "client-test", 3600),  # a real JWT, not the service token
        "FF_VIDEO": str(video / "episode.mp4"),
        "FF_EPISODE": EPISODE,
        "FF_SHOW": SHOW,
    }
    done = _run([str(client_python), str(script)], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    out = json.loads(done.stdout)

    assert Path(out["module"]).is_relative_to(client_python.parent.parent)  # the wheel's, not the work tree's
    size = (video / "episode.mp4").stat().st_size
    assert out["episode"]["size_bytes"] == size and out["uploads"][-1] == [size, size]
    assert [sent for sent, _ in out["uploads"]] == sorted(sent for sent, _ in out["uploads"])

    events = out["events"]
    assert events[-1][0] == "succeeded"
    running = [done for state, done, _ in events if state == "running"]
    assert len(set(running)) >= 2 and running == sorted(running), events  # frames_done seen increasing
    assert "faceflow-client[pandas]" in out["pandas_error"] and out["tracks"] > 0

    # The same screen time the stack reports: GetScreenTime from the main venv, and the run's screentime.json.
    with stack.channel("orchestrator") as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        reported = stub.GetScreenTime(orchestrator_pb2.GetScreenTimeRequest(ep_id=EPISODE), timeout=30)
    expected = [
        [kind, r.identity_id, r.label, r.seconds, [[i.start_s, i.end_s] for i in r.intervals]]
        for kind, rows in (("identity", reported.identities), ("person", reported.people))
        for r in rows
    ]
    screen_time = out["screen_time"]
    assert screen_time["rows"] == expected and screen_time["run_id"] == reported.run_id == out["run_id"]
    written = json.loads((stack.data_root / "episodes" / EPISODE / "screentime.json").read_text())
    people = {r[2]: r[3] for r in screen_time["rows"] if r[0] == "person"}
    assert people == pytest.approx({p["label"]: p["seconds"] for p in written["people"]})
    assert people.get(PERSON, 0) > 0, people  # the enrolled person was found and named

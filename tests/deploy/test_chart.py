"""Static verification of the Helm chart (deploy/helm/faceflow): lint, render, schema-validate, scan, and
assert the properties that matter. No cluster needed. Run by `make chart-check`, which fetches helm into
.cache/tools/bin and the checkers into .venv-deploy (they clash with the project venv's pins).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="chart tests run in .venv-deploy: `make chart-check`")

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "faceflow"
HELM = REPO / ".cache" / "tools" / "bin" / "helm"
BIN = Path(sys.executable).parent  # .venv-deploy/bin: kubernetes-validate, checkov, envoy
NAMESPACE = "faceflow"
RELEASE = "ff"
# Kinds of CRDs (KEDA, Prometheus Operator): kubernetes-validate has no schema for them.
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}
FACEFLOW_SERVICES = ("orchestrator", "detector", "embedder", "tracker", "storage")

# A public key in JWKS form (no private part anywhere): what `auth.jwks` takes, for the inline-JWKS cases.
JWKS = {
    "keys": [
        {
            "kty": "EC",
            "crv": "P-256",
            "x": "VAgbCcEAm7lGXisc3QeT-bkIhTjYN7AoReOSB1FEyks",
            "y": "FC4WxZtZillfidgvdF-23j27qH-pe2pcieKfbOxk5kg",
            "kid": "chart-test",
            "use": "sig",
            "alg": "ES256",
        }
    ]
}
ISSUER = "https://login.example.com/realms/tv"
# The chart has no auth defaults (it must not start open): every case names an issuer and its keys.
# ... and, with two orchestrator replicas by default, the PostgreSQL job store they share.
AUTH_COMMON = [
    "--set",
    f"auth.issuer={ISSUER}",
    "--set",
    "auth.audiences={faceflow,faceflow-web}",
    "--set",
    "orchestrator.jobStore.existingSecret=ff-jobs-db",
]
AUTH_URI = [*AUTH_COMMON, "--set", "auth.jwksUri=https://login.example.com/realms/tv/certs"]
AUTH_INLINE = [*AUTH_COMMON, "--set-json", "auth.jwks=" + json.dumps(json.dumps(JWKS))]
JWKS_MOUNT = "/etc/faceflow/auth"

# Each case is one `helm template` of the chart; every check below runs on every case.
CASES: dict[str, list[str]] = {
    "default": [*AUTH_URI],
    "keda": [*AUTH_INLINE, "--set", "autoscaling.mode=keda", "--set", "metrics.serviceMonitor.enabled=true"],
    "tls": [
        *AUTH_URI,
        "--set",
        "tls.enabled=true,tls.secretName=ff-tls",
        "--set",
        "s3.credentials.existingSecret=ff-s3",
        "--set",
        "auth.serviceToken.existingSecret=ff-service-token,auth.serviceToken.key=secret",
    ],
    "cpu-triton": [
        *AUTH_INLINE,
        "--set",
        "triton.gpu.enabled=false",
        "--set",
        "triton.modelRepository.type=volume",
        "--set",
        "auth.roleMap.tv-archive-editors=reviewer,auth.roleMap.faceflow-admins=admin,auth.rolesClaim=groups",
    ],
    "example-eks": ["-f", str(REPO / "deploy" / "k8s-values" / "example-eks.yaml"), *AUTH_URI],
    # No Triton: detector and embedder run the models themselves, from a models volume.
    "no-triton": [
        *AUTH_INLINE,
        "--set",
        "triton.enabled=false",
        "--set",
        "models.volume.persistentVolumeClaim.claimName=faceflow-models",
    ],
}
# The cases whose Triton is off (everything Triton-related is absent from their render).
NO_TRITON = {"no-triton"}
# Values the schema must refuse, and a fragment of helm's complaint.
REJECTED = {
    "replicas without a shared job store": (
        [*AUTH_URI, "--set", "orchestrator.jobStore.existingSecret="],
        "orchestrator.replicas > 1 needs a shared job store",
    ),
    "wildcard origin": ([*AUTH_URI, "--set", "envoy.cors.allowedOrigins={*}"], "allowedOrigins"),
    "unknown mode": ([*AUTH_URI, "--set", "autoscaling.mode=vpa"], "mode"),
    "tls without secret": ([*AUTH_URI, "--set", "tls.enabled=true"], "secretName"),
    "inline credential": ([*AUTH_URI, "--set", "s3.credentials.secretAccessKey=abc"], "secretAccessKey"),
    "misspelt key": ([*AUTH_URI, "--set", "autoscalling.mode=hpa"], "autoscalling"),
    "no auth": ([], "issuer"),
    "no audience": (["--set", f"auth.issuer={ISSUER}", "--set", "auth.jwksUri=https://x.example/certs"], "audiences"),
    "no keys": (AUTH_COMMON, "oneOf"),
    "two key sources": ([*AUTH_INLINE, "--set", "auth.jwksUri=https://x.example/certs"], "oneOf"),
    "unknown role": ([*AUTH_URI, "--set", "auth.roleMap.staff=superuser"], "roleMap"),
    "inline service token": ([*AUTH_URI, "--set", "auth.serviceToken.value=abc"], "value"),
    "no rate limit": ([*AUTH_URI, "--set", "envoy.rateLimit.perClientPerMinute=0"], "perClientPerMinute"),
}


def run(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    if not Path(args[0]).exists():
        pytest.fail(f"{args[0]} is missing: run `make chart-check`, which installs the tools")
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300)
    if ok and out.returncode != 0:
        command = " ".join(map(str, args[:3]))
        pytest.fail(f"{command} ... exited {out.returncode}:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return out


def helm_template(*values: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    return run(HELM, "template", RELEASE, CHART, "--namespace", NAMESPACE, *values, ok=ok)


@functools.cache
def rendered(case: str) -> str:
    return helm_template(*CASES[case]).stdout


def objects(case: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(rendered(case)) if d]


def of_kind(case: str, kind: str) -> dict[str, dict]:
    prefix = f"{RELEASE}-faceflow-"
    return {o["metadata"]["name"].removeprefix(prefix): o for o in objects(case) if o["kind"] == kind}


def expected_deployments(case: str) -> set[str]:
    return {*FACEFLOW_SERVICES, "envoy", "web"} | (set() if case in NO_TRITON else {"triton"})


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


@functools.cache
def checkov_results(tmp_root: str) -> dict[str, list[dict]]:
    """One checkov run over every case (it starts slowly): failed and skipped checks per case file."""
    folder = Path(tmp_root) / "checkov"
    folder.mkdir()
    for case in CASES:
        (folder / f"{case}.yaml").write_text(rendered(case))
    out = run(BIN / "checkov", "--skip-download", "--framework", "kubernetes", "-d", folder, "-o", "json", ok=False)
    reports = json.loads(out.stdout)
    found: dict[str, list[dict]] = {case: [] for case in CASES}
    for report in reports if isinstance(reports, list) else [reports]:
        for status in ("failed_checks", "skipped_checks"):
            for check in report["results"].get(status, []):
                found[Path(check["file_path"]).stem].append({"status": status, **check})
    return found


# --- tools ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict(case: str) -> None:
    run(HELM, "lint", "--strict", CHART, "--namespace", NAMESPACE, *CASES[case])


@pytest.mark.parametrize("case", CASES)
def test_manifests_match_kubernetes_schemas(case: str, tmp_path: Path) -> None:
    docs = objects(case)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in CRD_KINDS]))
    out = run(BIN / "kubernetes-validate", "--strict", "--quiet", manifest, ok=False)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("case", CASES)
def test_checkov_has_no_unaddressed_findings(case: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Without the platform (--skip-download) checkov reports no severities, so every failed check counts.
    results = checkov_results(str(tmp_path_factory.getbasetemp()))[case]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in results if c["status"] == "failed_checks"]
    assert not failed, "\n".join(failed)
    skipped = [c for c in results if c["status"] == "skipped_checks"]
    unexplained = [c["check_id"] for c in skipped if not c["check_result"].get("suppress_comment")]
    assert not unexplained, f"checkov skips need a reason: {unexplained}"


@pytest.mark.parametrize("name", REJECTED)
def test_schema_rejects(name: str) -> None:
    values, complaint = REJECTED[name]
    out = helm_template(*values, ok=False)
    assert out.returncode != 0 and complaint in out.stderr, out.stderr


# --- what the chart promises -------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_pods_are_hardened_and_probed(case: str) -> None:
    deployments = of_kind(case, "Deployment")
    assert set(deployments) == expected_deployments(case)
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        c = container(dep)
        sc = c["securityContext"]
        assert pod["automountServiceAccountToken"] is False, name
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] and psc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"], name
        assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, name
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        if name in FACEFLOW_SERVICES:
            assert "/var/lib/faceflow" in {m["mountPath"] for m in c["volumeMounts"]}, name
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["grpc"]["service"] == "" and c[probe]["grpc"]["port"] > 0, (name, probe)
        if name == "web":
            for probe in ("readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"]["port"] == "http", (name, probe)
    for name in ("detector", "embedder"):
        startup = container(deployments[name])["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300, name


@pytest.mark.parametrize("case", CASES)
def test_autoscaled_deployments_have_no_replicas(case: str) -> None:
    deployments = of_kind(case, "Deployment")
    hpas = of_kind(case, "HorizontalPodAutoscaler")
    scaled = of_kind(case, "ScaledObject")
    assert not (hpas and scaled), "HPA and KEDA at once"
    triton = case not in NO_TRITON
    assert set(hpas or scaled) == {"detector", "embedder"} | ({"triton"} if triton else set())
    for name in hpas or scaled:
        assert "replicas" not in deployments[name]["spec"], name
    for name, hpa in hpas.items():
        kinds = {m["type"] for m in hpa["spec"]["metrics"]}
        # Without Triton there is no queue time: CPU only.
        wanted = {"Pods"} if name == "triton" else ({"External", "Resource"} if triton else {"Resource"})
        assert kinds == wanted, (name, kinds)
    for name, so in scaled.items():
        query = so["spec"]["triggers"][0]["metadata"]["query"]
        assert "nv_inference_queue_duration_us" in query and "nv_inference_request_success" in query, name


@pytest.mark.parametrize("case", CASES)
def test_envoy_filters_origins_and_config(case: str, tmp_path: Path) -> None:
    config_text = of_kind(case, "ConfigMap")["envoy"]["data"]["envoy.yaml"]
    config = yaml.safe_load(config_text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"].rsplit(".", 1)[-1] for f in hcm["http_filters"]]
    assert names == ["grpc_web", "cors", "local_ratelimit", "jwt_authn", "router"]
    vhost = hcm["route_config"]["virtual_hosts"][0]
    origins = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]["allow_origin_string_match"]
    assert origins and all(set(o) == {"exact"} and "*" not in o["exact"] for o in origins)
    clusters = {r["route"]["cluster"] for r in vhost["routes"] if "cluster" in r.get("route", {})}
    assert clusters == {"orchestrator", "storage", "web"}
    code = [line for line in config_text.splitlines() if not line.lstrip().startswith("#")]
    assert not re.findall(r"\$\{[A-Z_]+\}", "\n".join(code)), "a placeholder was left unfilled"
    if "/etc/faceflow/tls" in config_text:  # envoy validate opens the files: give it real ones
        if not shutil.which("openssl"):
            pytest.skip("openssl missing: cannot make a certificate for the TLS config")
        run(
            "/usr/bin/env",
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=t",
            "-keyout",
            tmp_path / "tls.key",
            "-out",
            tmp_path / "tls.crt",
        )
        shutil.copy(tmp_path / "tls.crt", tmp_path / "ca.crt")
        config_text = config_text.replace("/etc/faceflow/tls", str(tmp_path))
    if JWKS_MOUNT in config_text:  # the inline JWKS, where the ConfigMap would mount it
        (tmp_path / "jwks.json").write_text(of_kind(case, "ConfigMap")["jwks"]["data"]["jwks.json"])
        config_text = config_text.replace(JWKS_MOUNT, str(tmp_path))
    (tmp_path / "envoy.yaml").write_text(config_text)
    run(BIN / "envoy", "--mode", "validate", "-c", tmp_path / "envoy.yaml")


def test_chart_carries_the_projects_envoy_config() -> None:
    """files/envoy.yaml is a copy of deploy/envoy/envoy.yaml (make chart-check syncs it): one config everywhere."""
    source = REPO / "deploy" / "envoy" / "envoy.yaml"
    if not source.is_file():
        pytest.skip("deploy/envoy/envoy.yaml is not in this tree")
    assert (CHART / "files" / "envoy.yaml").read_text() == source.read_text(), "run `make chart-check` to sync"


@pytest.mark.parametrize("case", CASES)
def test_network_policies_follow_the_data_flow(case: str) -> None:
    policies = of_kind(case, "NetworkPolicy")
    assert policies["default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    grpc_port = container(of_kind(case, "Deployment")["detector"])["ports"][0]["containerPort"]
    expected = {
        "detector": {"orchestrator"},
        "tracker": {"orchestrator"},
        "triton": {"detector", "embedder"},
        "storage": {"orchestrator", "envoy"},
        "web": {"envoy"},
    }
    if case in NO_TRITON:
        assert "triton" not in policies
        del expected["triton"]
    web_port = container(of_kind(case, "Deployment")["web"])["ports"][0]["containerPort"]
    for name, allowed in expected.items():
        port = {"triton": 8001, "web": web_port}.get(name, grpc_port)
        callers = set()
        for rule in policies[name]["spec"]["ingress"]:
            ports = {p["port"] for p in rule["ports"]}
            if port in ports:
                callers |= {peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in rule["from"]}
            else:  # every other rule is Prometheus on the metrics port
                assert "namespaceSelector" in rule["from"][0] and len(ports) == 1, (name, rule)
        assert callers == allowed, (name, callers)


@pytest.mark.parametrize("case", CASES)
def test_triton_gpu_and_backend_wiring(case: str) -> None:
    deployments = of_kind(case, "Deployment")
    if case in NO_TRITON:
        for name in ("detector", "embedder"):
            variables = env(deployments[name])
            assert variables["FACEFLOW_BACKEND"]["value"] == "onnx" and "FACEFLOW_TRITON_URL" not in variables
            models = {m["name"]: m for m in container(deployments[name])["volumeMounts"]}["models"]
            assert models["mountPath"] == "/opt/faceflow/cache/models" and models["readOnly"]
        for name in ("orchestrator", "tracker", "storage"):
            assert "models" not in {m["name"] for m in container(deployments[name])["volumeMounts"]}, name
        for name in ("detector", "embedder"):
            egress = of_kind(case, "NetworkPolicy")[name]["spec"]["egress"]
            peers = [p.get("podSelector", {}).get("matchLabels", {}) for rule in egress for p in rule.get("to", [])]
            assert "triton" not in {labels.get("app.kubernetes.io/component") for labels in peers}, name
        return
    triton = deployments["triton"]
    gpu_wanted = case != "cpu-triton"
    assert ("nvidia.com/gpu" in container(triton)["resources"]["limits"]) is gpu_wanted
    assert ("nodeSelector" in triton["spec"]["template"]["spec"]) is gpu_wanted
    assert {p["containerPort"] for p in container(triton)["ports"]} == {8000, 8001, 8002}
    assert "startupProbe" in container(triton)
    for name in ("detector", "embedder"):
        variables = env(deployments[name])
        assert variables["FACEFLOW_BACKEND"]["value"] == "triton"
        assert variables["FACEFLOW_TRITON_URL"]["value"] == f"{RELEASE}-faceflow-triton.{NAMESPACE}.svc:8001"
    storage = env(deployments["storage"])
    assert storage["FACEFLOW_STORAGE_BACKEND"]["value"] == "s3" and storage["FACEFLOW_S3_BUCKET"]["value"]


@pytest.mark.parametrize("case", CASES)
def test_no_secret_values_inline(case: str) -> None:
    """The one Secret the chart may create is the service token, generated (never a value from values.yaml)."""
    secrets = of_kind(case, "Secret")
    assert set(secrets) <= {"service-token"}
    if secrets:
        first = secrets["service-token"]["data"]["token"]
        assert len(base64.b64decode(first)) == 48
        again = [o for o in yaml.safe_load_all(helm_template(*CASES[case]).stdout) if o and o["kind"] == "Secret"]
        assert again[0]["data"]["token"] != first, "the token must be random, not a value"
    mounted = {
        m["mountPath"]
        for dep in of_kind(case, "Deployment").values()
        for m in container(dep)["volumeMounts"]
        if m["name"] == "service-token"
    }
    for name, dep in of_kind(case, "Deployment").items():
        for var in container(dep).get("env", []):
            if any(word in var["name"] for word in ("SECRET", "KEY_ID", "TOKEN", "PASSWORD", "SIGNING_KEY")):
                if var["name"].endswith("_FILE"):  # a path into a mounted Secret, not the secret itself
                    assert str(Path(var["value"]).parent) in mounted, (name, var)
                else:
                    assert "secretKeyRef" in var.get("valueFrom", {}), (name, var["name"])


@pytest.mark.parametrize("case", CASES)
def test_orchestrator_spreads_segments_over_detector_pods(case: str) -> None:
    deployments = of_kind(case, "Deployment")
    orchestrator = deployments["orchestrator"]
    variables = env(orchestrator)
    services = of_kind(case, "Service")
    for dep in ("DETECTOR", "EMBEDDER"):
        address = variables[f"FACEFLOW_{dep}_ADDR"]["value"]
        assert address.startswith("dns:///") and "-headless." in address
        headless = address.removeprefix("dns:///").split(".")[0].removeprefix(f"{RELEASE}-faceflow-")
        assert services[headless]["spec"]["clusterIP"] == "None"
    assert int(variables["FACEFLOW_SEGMENT_PARALLELISM"]["value"]) >= 2


# --- authentication and the edge ------------------------------------------------------------------------


def envoy_config(case: str) -> dict:
    return yaml.safe_load(of_kind(case, "ConfigMap")["envoy"]["data"]["envoy.yaml"])


def http_filters(config: dict) -> dict[str, dict]:
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {f["name"]: f["typed_config"] for f in hcm["http_filters"]}


@pytest.mark.parametrize("case", CASES)
def test_envoy_requires_a_token_on_every_route(case: str) -> None:
    config = envoy_config(case)
    jwt_authn = http_filters(config)["envoy.filters.http.jwt_authn"]
    (provider,) = jwt_authn["providers"].values()
    assert provider["issuer"] == ISSUER and provider["audiences"] == ["faceflow", "faceflow-web"]
    assert provider["forward"] is True  # the services verify the token again and read the role
    assert provider["from_headers"] == [{"name": "authorization", "value_prefix": "Bearer "}]
    # Every gRPC path and every request but a GET needs the provider; only the UI's GETs (static files,
    # routed to `web`) and CORS preflights pass without.
    requires = {"provider_name": "faceflow"}
    get = {"name": ":method", "string_match": {"exact": "GET"}}
    assert jwt_authn["rules"] == [
        {"match": {"prefix": "/faceflow.v1."}, "requires": requires},
        {"match": {"prefix": "/", "headers": [get]}},
        {"match": {"prefix": "/"}, "requires": requires},
    ]
    assert jwt_authn["bypass_cors_preflight"] is True
    vhost = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = vhost["route_config"]["virtual_hosts"][0]["routes"]
    assert all(r["match"].get("prefix", "").startswith("/") or r["match"].get("path") for r in routes)
    assert not any("envoy.filters.http.jwt_authn" in r.get("typed_per_filter_config", {}) for r in routes)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    if "jwksUri=" in " ".join(CASES[case]):
        assert "local_jwks" not in provider
        remote = provider["remote_jwks"]
        assert remote["http_uri"] == {
            "uri": "https://login.example.com/realms/tv/certs",
            "cluster": "jwks",
            "timeout": "5s",
        }
        tls = clusters["jwks"]["transport_socket"]["typed_config"]
        assert tls["sni"] == "login.example.com"
        validation = tls["common_tls_context"]["validation_context"]
        assert validation["match_typed_subject_alt_names"] == [
            {"san_type": "DNS", "matcher": {"exact": "login.example.com"}}
        ]
        endpoint = clusters["jwks"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {"address": "login.example.com", "port_value": 443}
    else:
        assert provider["local_jwks"] == {"filename": f"{JWKS_MOUNT}/jwks.json"} and "jwks" not in clusters
        assert json.loads(of_kind(case, "ConfigMap")["jwks"]["data"]["jwks.json"]) == JWKS
        envoy_pod = of_kind(case, "Deployment")["envoy"]
        assert {m["mountPath"] for m in container(envoy_pod)["volumeMounts"]} >= {JWKS_MOUNT}


@pytest.mark.parametrize("case", CASES)
def test_envoy_strips_service_headers_and_limits_rate(case: str) -> None:
    config = envoy_config(case)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    # Route-config level: applies to every route, before any service sees the request.
    assert set(hcm["route_config"]["request_headers_to_remove"]) == {"x-faceflow-service-token", "x-faceflow-principal"}
    assert hcm["use_remote_address"] is True and hcm["xff_num_trusted_hops"] == 1
    limit = http_filters(config)["envoy.filters.http.local_ratelimit"]
    assert limit["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
    (per_client,) = limit["descriptors"]
    assert per_client["entries"] == [{"key": "remote_address", "value": ""}]  # a bucket per address
    assert per_client["token_bucket"]["max_tokens"] == 1200 and per_client["token_bucket"]["fill_interval"] == "60s"
    assert limit["token_bucket"]["max_tokens"] == 30000  # every client together
    for switch in ("filter_enabled", "filter_enforced"):
        assert limit[switch]["default_value"] == {"numerator": 100, "denominator": "HUNDRED"}


@pytest.mark.parametrize("case", CASES)
def test_every_service_authenticates(case: str) -> None:
    deployments = of_kind(case, "Deployment")
    secret = "ff-service-token" if case == "tls" else f"{RELEASE}-faceflow-service-token"
    key = "secret" if case == "tls" else "token"
    for name in FACEFLOW_SERVICES:
        dep = deployments[name]
        variables = {k: v.get("value") for k, v in env(dep).items()}
        assert variables["FACEFLOW_AUTH_ISSUER"] == ISSUER, name
        assert variables["FACEFLOW_AUTH_AUDIENCES"] == "faceflow,faceflow-web", name
        if "jwksUri=" in " ".join(CASES[case]):
            assert (
                variables["FACEFLOW_AUTH_JWKS_URI"].startswith("https://")
                and "FACEFLOW_AUTH_JWKS_FILE" not in variables
            )
        else:
            assert variables["FACEFLOW_AUTH_JWKS_FILE"] == f"{JWKS_MOUNT}/jwks.json", name
        if case == "cpu-triton":
            assert variables["FACEFLOW_AUTH_ROLES_CLAIM"] == "groups"
            assert variables["FACEFLOW_AUTH_ROLE_MAP"] == "faceflow-admins=admin,tv-archive-editors=reviewer"
        # The service token: a read-only file from the Secret, never an env value.
        assert variables["FACEFLOW_SERVICE_TOKEN_FILE"] == "/etc/faceflow/service-token/token", name
        mounts = {m["name"]: m for m in container(dep)["volumeMounts"]}
        assert (
            mounts["service-token"]["readOnly"]
            and mounts["service-token"]["mountPath"] == "/etc/faceflow/service-token"
        )
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        assert volumes["service-token"]["secret"]["secretName"] == secret, name
        assert volumes["service-token"]["secret"]["items"] == [{"key": key, "path": "token"}]
    # Orchestrator: no server-side file paths from anyone in a cluster unless asked for.
    assert env(deployments["orchestrator"])["FACEFLOW_ALLOW_LOCAL_SOURCES"]["value"] == "false"
    # Detector: the only URLs it fetches are the bucket's (it needs the bucket's name, not its keys).
    detector_env = env(deployments["detector"])
    assert detector_env["FACEFLOW_S3_BUCKET"]["value"] and "AWS_SECRET_ACCESS_KEY" not in detector_env
    # Envoy, Triton and the UI's static server never get the service token.
    for name in ("envoy", "triton", "web"):
        if name not in deployments:
            continue
        dep = deployments[name]
        assert "service-token" not in {v["name"] for v in dep["spec"]["template"]["spec"].get("volumes", [])}, name
    assert (case == "tls") is ("service-token" not in of_kind(case, "Secret"))


@pytest.mark.parametrize("case", ["default", "keda"])
def test_jwks_egress_only_with_a_remote_jwks(case: str) -> None:
    policies = of_kind(case, "NetworkPolicy")
    remote = "jwksUri=" in " ".join(CASES[case])
    for name in ("envoy", "orchestrator", "storage", "detector", "embedder", "tracker"):
        blocks = {
            peer.get("ipBlock", {}).get("cidr")
            for rule in policies[name]["spec"]["egress"]
            for peer in rule.get("to", [])
            if {p["port"] for p in rule.get("ports", [])} == {443}
        }
        wanted = remote and name in ("envoy", "orchestrator", "storage")
        assert ("0.0.0.0/0" in blocks) is (wanted or name in ("storage", "detector")), (name, blocks)


def test_allow_local_sources_is_a_value() -> None:
    out = helm_template(*AUTH_URI, "--set", "orchestrator.allowLocalSources=true").stdout
    orchestrator = next(
        o
        for o in yaml.safe_load_all(out)
        if o and o["kind"] == "Deployment" and o["metadata"]["name"].endswith("orchestrator")
    )
    assert env(orchestrator)["FACEFLOW_ALLOW_LOCAL_SOURCES"]["value"] == "true"


@pytest.mark.parametrize("case", CASES)
def test_envoy_serves_the_review_ui(case: str) -> None:
    """GETs that are no gRPC call go to the web Deployment (the faceflow image's static server), over
    plain HTTP/1.1, after every gRPC route and before the final 404."""
    config = envoy_config(case)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert routes[-1] == {"match": {"prefix": "/"}, "direct_response": {"status": 404}}
    ui = routes[-2]
    assert ui["match"] == {"prefix": "/", "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]}
    assert ui["route"]["cluster"] == "web"
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    web = clusters["web"]
    assert "typed_extension_protocol_options" not in web and "transport_socket" not in web
    endpoint = web["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    deployment = of_kind(case, "Deployment")["web"]
    assert endpoint == {
        "address": f"{RELEASE}-faceflow-web.{NAMESPACE}.svc",
        "port_value": container(deployment)["ports"][0]["containerPort"],
    }
    c = container(deployment)
    assert c["command"] == ["python", "-m", "services.cli.web"] and "--grpc-web-url=/" in c["args"]
    assert c["image"] == container(of_kind(case, "Deployment")["orchestrator"])["image"]
    assert of_kind(case, "Service")["web"]["spec"]["ports"][0]["targetPort"] == "http"


def test_web_ui_can_be_left_out() -> None:
    out = helm_template(*AUTH_URI, "--set", "web.enabled=false").stdout
    docs = [o for o in yaml.safe_load_all(out) if o]
    assert not [o for o in docs if o["metadata"]["name"].endswith("-web")]
    (config_map,) = [o for o in docs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-envoy")]
    config = yaml.safe_load(config_map["data"]["envoy.yaml"])
    assert "web" not in {c["name"] for c in config["static_resources"]["clusters"]}


def test_container_e2e_values_lint_and_render() -> None:
    """ci/container-e2e-values.yaml (tests/container/, make container-e2e) stays valid for the chart: the
    local images, no Triton, one replica each, models from a volume, the UI."""
    values = [
        "-f",
        str(CHART / "ci" / "container-e2e-values.yaml"),
        *AUTH_INLINE,
        "--set",
        "models.volume.hostPath.path=/models,s3.credentials.existingSecret=ffe2e-s3",
    ]
    run(HELM, "lint", "--strict", CHART, "--namespace", NAMESPACE, *values)
    docs = [o for o in yaml.safe_load_all(helm_template(*values).stdout) if o]
    deployments = {
        o["metadata"]["name"].removeprefix(f"{RELEASE}-faceflow-"): o for o in docs if o["kind"] == "Deployment"
    }
    assert set(deployments) == {*FACEFLOW_SERVICES, "envoy", "web"}
    for name, dep in deployments.items():
        assert dep["spec"]["replicas"] == 1, name
        assert container(dep)["image"].startswith("localhost/faceflow"), name
    assert env(deployments["detector"])["FACEFLOW_BACKEND"]["value"] == "onnx"


@pytest.mark.parametrize("case", CASES)
def test_orchestrator_replicas_share_a_postgres_job_store(case: str) -> None:
    """Jobs survive a replica: two orchestrators, the DSN from a Secret (never a value), a PDB."""
    deployment = of_kind(case, "Deployment")["orchestrator"]
    variables = env(deployment)
    assert variables["FACEFLOW_JOBS_DSN_FILE"]["value"] == "/etc/faceflow/jobs-db/dsn"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["jobs-db"]["secret"]["secretName"] == "ff-jobs-db"
    assert volumes["jobs-db"]["secret"]["items"] == [{"key": "dsn", "path": "dsn"}]
    assert variables["FACEFLOW_JOB_LEASE_S"]["value"] == "15"
    if case in ("default", "tls", "cpu-triton"):
        assert deployment["spec"]["replicas"] == 2
    budgets = of_kind(case, "PodDisruptionBudget")
    assert budgets["orchestrator"]["spec"]["maxUnavailable"] == 1


def test_one_orchestrator_may_keep_its_jobs_in_sqlite() -> None:
    out = helm_template(
        *AUTH_URI, "--set", "orchestrator.jobStore.existingSecret=", "--set", "orchestrator.replicas=1"
    ).stdout
    deployments = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    orchestrator = next(d for d in deployments if d["metadata"]["name"].endswith("-orchestrator"))
    assert orchestrator["spec"]["replicas"] == 1 and "FACEFLOW_JOBS_DSN_FILE" not in env(orchestrator)

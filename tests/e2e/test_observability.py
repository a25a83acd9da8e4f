"""Every metric the Grafana dashboard and the alert rules name is exported by a running service,
and docs/operations.md describes every metric every service exports."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from deploy.embedded.services import ServiceName

REPO = Path(__file__).resolve().parents[2]
OBSERVABILITY = REPO / "deploy" / "observability"
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def exported_families(base_url: str) -> set[str]:
    """Metric family names from ``# TYPE`` lines (present even before a labelled metric has
    its first sample)."""
    with _NO_PROXY.open(f"{base_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return set(re.findall(r"^# TYPE (\S+) \S+$", text, re.MULTILINE))


def family_of(name: str, families: set[str]) -> str | None:
    """The family a sample name belongs to (``x_total`` -> ``x`` for counters, ...)."""
    if name in families:
        return name
    for suffix in SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in families:
            return name[: -len(suffix)]
    return None


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\b((?:postwire|http)_[a-z0-9_]+)", expr))


def referenced_metrics() -> dict[str, set[str]]:
    """metric name -> where it is used (dashboard panel titles, alert names)."""
    used: dict[str, set[str]] = {}
    dashboard: dict[str, Any] = json.loads(
        (OBSERVABILITY / "grafana" / "dashboards" / "postwire.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in names_in(target["expr"]):
                used.setdefault(name, set()).add(f"panel {panel['title']!r}")
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in names_in(rule["expr"]):
                used.setdefault(name, set()).add(f"alert {rule['alert']}")
    return used


def test_dashboard_and_alerts_name_only_exported_metrics_and_docs_list_them_all(
        run_service: Any) -> None:
    exported: dict[ServiceName, set[str]] = {}
    for name in ("ingest", "dispatcher", "dlq_replay"):
        service = run_service(name)
        exported[name] = exported_families(service.base_url)
    every = set().union(*exported.values())
    used = referenced_metrics()
    assert len(used) >= 20, sorted(used)
    missing = {name: sorted(where) for name, where in used.items()
               if family_of(name, every) is None}
    assert missing == {}, f"named but exported by no service: {missing}"

    operations = (REPO / "docs" / "operations.md").read_text()
    undocumented = {service: sorted(f for f in families
                                    if not f.endswith("_created") and f"`{f}" not in operations)
                    for service, families in exported.items()}
    assert undocumented == {"ingest": [], "dispatcher": [], "dlq_replay": []}

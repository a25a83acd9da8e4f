"""The ledger's alert rules read metrics the admin service really exports."""

from __future__ import annotations

import re
from pathlib import Path

from services.dlq_replay.metrics import AdminMetrics

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "observability" / "alerts.yml"


def test_ledger_alert_rules_use_exported_metrics() -> None:
    text = ALERTS.read_text()
    used = set(re.findall(r"\b(postwire_ledger_[a-z_]+)", text))
    assert {"postwire_ledger_oldest_open_delivery_age_seconds",
            "postwire_ledger_unbalanced_deliveries"} <= used
    exported = {metric.name for metric in AdminMetrics().registry.collect()}
    assert used <= exported, used - exported
    for name in ("PostwireOldestOpenDeliveryTooOld", "PostwireLedgerUnbalanced",
                 "PostwireLedgerStale"):
        assert f"- alert: {name}\n" in text

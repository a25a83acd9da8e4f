"""The delivery lifecycle's statuses are written once (shared.core.delivery_status)."""

from __future__ import annotations

import re
import typing
from pathlib import Path

from shared.core.delivery_status import OPEN_SQL, OPEN_STATUSES, STATUSES, DeliveryStatus
from shared.models.common import DeliveryStatus as DeliveryStatusModel

REPO = Path(__file__).resolve().parents[2]
#: an SQL or Python spelling of the open set written out by hand
HAND_WRITTEN_OPEN_SET = re.compile(r"""[({]\s*["']pending["']\s*,\s*["']retrying["']\s*[)}]""")


def test_open_statuses_are_pending_and_retrying_only() -> None:
    assert OPEN_STATUSES == ("pending", "retrying")
    assert OPEN_SQL == "('pending', 'retrying')"
    assert [s for s in DeliveryStatus if s.is_open] == [DeliveryStatus.PENDING,
                                                         DeliveryStatus.RETRYING]
    assert STATUSES == ("pending", "retrying", "succeeded", "dead", "cancelled")


def test_the_api_models_status_literal_is_the_same_set() -> None:
    assert typing.get_args(DeliveryStatusModel) == STATUSES


def test_no_product_module_writes_the_open_set_by_hand() -> None:
    home = REPO / "shared" / "core" / "delivery_status.py"
    sources = [p for package in ("services", "shared", "cli")
               for p in (REPO / package).rglob("*.py") if p != home]
    assert len(sources) > 50
    offenders = sorted(str(p.relative_to(REPO)) for p in sources
                       if HAND_WRITTEN_OPEN_SET.search(p.read_text(encoding="utf-8")))
    assert offenders == []


def test_the_check_recognises_each_hand_written_spelling() -> None:
    for text in ["status IN ('pending', 'retrying')", 'OPEN = ("pending", "retrying")',
                 'frozenset({"pending", "retrying"})']:
        assert HAND_WRITTEN_OPEN_SET.search(text), text
    # a list that merely contains both, among others, is not the open set
    assert not HAND_WRITTEN_OPEN_SET.search('("dead", "pending", "retrying")')

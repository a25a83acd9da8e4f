"""Topic creation and the layout check against an in-memory admin client: a topic another
process created first is still checked, one the broker describes only after a moment is
waited for, and one it never describes is reported unknown, never a false mismatch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.adapters.kafka import topics
from shared.adapters.kafka.topics import TopicState


@dataclass
class FakeAdmin:
    """list/create/describe like aiokafka's admin client; ``late`` topics are described with
    no partitions for their first ``late[name]`` describe calls."""

    existing: dict[str, tuple[int, int]]
    race: dict[str, tuple[int, int]] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)

    async def list_topics(self) -> list[str]:
        return list(self.existing)

    async def create_topics(self, new: list[Any]) -> Any:
        errors: list[tuple[str, int, str | None]] = []
        for topic in new:
            if topic.name in self.race:  # created by someone else in between
                self.existing[topic.name] = self.race[topic.name]
                errors.append((topic.name, 36, "exists"))
            else:
                self.existing[topic.name] = (topic.num_partitions, topic.replication_factor)
                self.created.append(topic.name)
                errors.append((topic.name, 0, None))
        return type("Response", (), {"topic_errors": errors})()

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        out = []
        for name in names:
            if self.late.get(name, 0) > 0:
                self.late[name] -= 1
                out.append({"topic": name, "error_code": 3, "partitions": []})
                continue
            count, rf = self.existing[name]
            out.append({"topic": name, "error_code": 0, "partitions": [
                {"partition": p, "replicas": list(range(rf))} for p in range(count)]})
        return out


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None
    monkeypatch.setattr("shared.adapters.kafka.topics.asyncio.sleep", instant)


async def test_missing_topics_are_created_with_the_configured_layout() -> None:
    admin = FakeAdmin(existing={})
    states = await topics._ensure(admin, "p.", 8, 3)
    assert states == [TopicState("p.deadletter", 8, 3, True),
                      TopicState("p.deliveries", 8, 3, True)]
    assert sorted(admin.created) == ["p.deadletter", "p.deliveries"]


async def test_a_topic_created_by_another_process_first_is_checked() -> None:
    admin = FakeAdmin(existing={"p.deadletter": (8, 3)}, race={"p.deliveries": (4, 3)})
    states = await topics._ensure(admin, "p.", 8, 3)
    deliveries = next(s for s in states if s.name == "p.deliveries")
    assert deliveries == TopicState("p.deliveries", 4, 3, created=False)
    assert deliveries.problem(8, 3) == ("Kafka topic p.deliveries has 4 partitions but "
                                        "POSTWIRE_KAFKA_PARTITIONS=8")


async def test_a_topic_described_late_is_waited_for_and_one_never_described_is_unknown() -> None:
    admin = FakeAdmin(existing={"p.deadletter": (8, 1), "p.deliveries": (8, 1)},
                      late={"p.deliveries": 3, "p.deadletter": 99})
    states = {s.name: s for s in await topics._ensure(admin, "p.", 8, 1)}
    assert states["p.deliveries"] == TopicState("p.deliveries", 8, 1, created=False)
    assert states["p.deadletter"].known is False
    assert states["p.deadletter"].problem(8, 1) is None  # unknown is not a mismatch

"""Topic creation and the layout check against an in-memory admin client: a topic another
process created first is still checked, one the broker describes only after a moment is
waited for, and one it never describes is reported unknown, never a false mismatch; a
replication factor below ``min.insync.replicas`` is refused, and a broker that does not
describe its configs leaves that unchecked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.errors import KafkaError

from shared.adapters.kafka import topics
from shared.adapters.kafka.topics import TopicMismatch, TopicState, insync_problem


class _Answer:
    """A DescribeConfigs response as aiokafka returns it (``to_object``)."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources

    def to_object(self) -> dict[str, Any]:
        return {"resources": self.resources}


@dataclass
class FakeAdmin:
    """list/create/describe like aiokafka's admin client; ``late`` topics are described with
    no partitions for their first ``late[name]`` describe calls."""

    existing: dict[str, tuple[int, int]]
    race: dict[str, tuple[int, int]] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    broker_min_insync: int | None = None     # None: DescribeConfigs fails (as on Tansu)
    topic_min_insync: dict[str, int] = field(default_factory=dict)

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": 0}, {"node_id": 1}]}

    async def describe_configs(self, resources: list[Any]) -> list[_Answer]:
        if self.broker_min_insync is None:
            raise KafkaError("connection closed")
        out = []
        for resource in resources:
            value = (self.topic_min_insync.get(resource.name, self.broker_min_insync)
                     if resource.resource_type == ConfigResourceType.TOPIC
                     else self.broker_min_insync)
            out.append({"error_code": 0, "resource_name": resource.name, "config_entries": [
                {"config_names": "min.insync.replicas", "config_value": str(value)}]})
        return [_Answer(out)]

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


@pytest.mark.parametrize("replication_factor,min_insync,refused", [
    (1, None, False), (1, 1, False), (3, 2, False), (2, 2, False), (1, 2, True), (2, 3, True),
])
def test_a_replication_factor_below_min_insync_is_refused(
        replication_factor: int, min_insync: int | None, refused: bool) -> None:
    problem = insync_problem("topic t has replication factor", replication_factor, min_insync)
    assert (problem is not None) is refused
    if problem is not None:
        assert problem.startswith(f"topic t has replication factor {replication_factor} but "
                                  f"min.insync.replicas={min_insync}: no write")
        assert "\n" not in problem


async def test_topics_are_not_created_below_the_brokers_min_insync() -> None:
    admin = FakeAdmin(existing={}, broker_min_insync=2)
    with pytest.raises(TopicMismatch, match=r"POSTWIRE_KAFKA_REPLICATION_FACTOR is 1 but "
                       r"min\.insync\.replicas=2"):
        await topics._ensure(admin, "p.", 8, 1)
    assert admin.created == []
    states = await topics._ensure(admin, "p.", 8, 2)
    assert [s.min_insync for s in states] == [2, 2] and sorted(admin.created) == [
        "p.deadletter", "p.deliveries"]


async def test_an_existing_topic_below_its_min_insync_is_a_mismatch() -> None:
    admin = FakeAdmin(existing={"p.deadletter": (8, 3), "p.deliveries": (8, 3)},
                      broker_min_insync=2, topic_min_insync={"p.deliveries": 4})
    states = {s.name: s for s in await topics._ensure(admin, "p.", 8, 1)}
    assert states["p.deadletter"].problem(8, 1) is None
    problem = states["p.deliveries"].problem(8, 1)
    assert problem is not None and problem.startswith(
        "Kafka topic p.deliveries has replication factor 3 but min.insync.replicas=4")


async def test_a_broker_without_describe_configs_leaves_min_insync_unchecked() -> None:
    admin = FakeAdmin(existing={"p.deadletter": (8, 1)})
    states = await topics._ensure(admin, "p.", 8, 1)
    assert [s.min_insync for s in states] == [None, None]
    assert all(s.problem(8, 1) is None for s in states)

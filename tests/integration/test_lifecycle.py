"""Task lifecycle states on the results topic, and persistent revoke (real broker)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from streamtasks import App, TaskFailedError, TaskStatus
from streamtasks.testing import consume_all
from streamtasks.wire.envelope import ResultRecord
from streamtasks.wire.topics import results_topic
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration

S = TaskStatus


def _history(app: App, bootstrap: str, ns: str, ids: set[str]) -> dict[str, list[TaskStatus]]:
    """Status sequence per task id, in topic order, once every id has a final state."""
    seen: dict[str, list[TaskStatus]] = defaultdict(list)

    def complete(msgs: list[object]) -> bool:
        seen.clear()
        for m in msgs:
            raw = app.codec.decode(m.value(), expect=app.result_schema)[1]  # type: ignore[attr-defined]
            rec = ResultRecord.from_avro(raw)
            seen[rec.task_id].append(rec.status)
        return all(seen[i] and seen[i][-1].is_final for i in ids)

    consume_all(bootstrap, results_topic(ns), expect=complete, timeout=60)  # type: ignore[arg-type]
    return {i: seen[i] for i in ids}


def test_status_transitions_for_every_outcome(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    t = app.tasks
    handles = {
        "success": t["tracked"].send(4),
        "retry-then-success": t["flaky"].send(1),
        "failure": t["fail"].send("no"),
        "dead": t["doomed"].send("x"),
        "expired": t["add"].apply_async((1, 1), expires=datetime.now(UTC) - timedelta(seconds=1)),
        "revoked": t["add"].apply_async((1, 2), countdown=3),
    }
    assert handles["revoked"].status is S.PENDING  # nothing known yet
    handles["revoked"].revoke()
    for h in handles.values():
        h.get(timeout=60, propagate=False)
    history = _history(app, kafka_bootstrap, ns, {h.id for h in handles.values()})
    got = {name: history[h.id] for name, h in handles.items()}
    assert got == {
        "success": [S.STARTED, S.SUCCESS],
        "retry-then-success": [S.RETRY, S.SUCCESS],
        "failure": [S.FAILURE],
        "dead": [S.RETRY, S.RETRY, S.DEAD],
        "expired": [S.EXPIRED],
        "revoked": [S.REVOKED],
    }
    assert handles["success"].info == 40
    assert handles["failure"].info.type == "ValueError"


def test_a_revoke_survives_worker_restarts(app: App, start_workers: StartWorkers) -> None:
    # Given a task delayed by 4 s, revoked while it waits
    (first,) = start_workers(1)
    res = app.tasks["add"].apply_async((2, 2), countdown=4)
    res.revoke()
    # When every worker is replaced before it is due
    first.kill()
    start_workers(1)
    # Then it is not run: it ends REVOKED
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=60)
    assert info.value.error_type == "TaskRevoked"
    assert res.status is S.REVOKED

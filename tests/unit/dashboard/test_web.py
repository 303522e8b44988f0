"""The dashboard's HTTP side with Starlette's TestClient (no broker: the tails are not started)."""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from streamtasks import App
from streamtasks.cli import cli
from streamtasks.dashboard.aggregates import Aggregates, TimelineEntry
from streamtasks.dashboard.security import COOKIE, Guard, check_bind
from streamtasks.dashboard.tails import Tails, schedule_rows, timeline_entry
from streamtasks.dashboard.views import compact_partitions
from streamtasks.dashboard.web import create_app, selection_query, template_environment
from streamtasks.errors import ConfigError
from streamtasks.ops.deadletters import RedriveOutcome, RedriveReport
from streamtasks.ops.store import Change
from streamtasks.scheduler import LastFire
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus, now_ms
from streamtasks.wire.events import TaskEvent, TaskEventType, WorkerHeartbeat

XSS = "<script>alert(1)</script>"


@pytest.fixture
def app() -> App:
    a = App("unit", bootstrap_servers="127.0.0.1:1", namespace="ns")

    @a.task(name="echo")
    def echo(text: str) -> str:
        return text

    return a


@pytest.fixture
def tails(app: App, tmp_path: Path) -> Tails:
    t = Tails(app, Aggregates(), cache_dir=tmp_path)
    now = now_ms()
    rec = ResultRecord(
        "id-1",
        "echo",
        TaskStatus.DEAD,
        3,
        now - 1000,
        finished_at=now,
        error=ErrorInfo("ValueError", XSS, "Traceback: " + XSS),
    )
    t.agg.record_result(rec, "default", now)
    t.agg.record_args("id-1", "echo", app.tasks["echo"].encode_args([XSS], {}))
    t.agg.record_event("id-1", TimelineEntry("DEAD", now, 3, "w-1", XSS))
    with t.result_store() as store:
        store.apply([Change(0, 0, "id-1", rec)])
    return t


def client(tails: Tails, guard: Guard) -> TestClient:
    return TestClient(create_app(tails, guard), base_url="http://127.0.0.1:8765")


def test_every_read_page_renders(tails: Tails) -> None:
    c = client(tails, Guard.make("s3cret"))
    for path in ("/", "/tasks", "/failures", "/schedules", "/workers", "/login"):
        r = c.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "streamtasks · unit" in r.text
    overview = c.get("/").text
    assert 'id="queue-default"' in overview
    assert re.search(r'class="num failed">1<', overview)


def test_the_task_page_shows_result_args_and_timeline_with_task_data_escaped(
    tails: Tails,
) -> None:
    r = client(tails, Guard.make("s3cret")).get("/tasks", params={"id": "id-1"})
    assert r.status_code == 200
    assert XSS not in r.text  # never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "event-DEAD" in r.text and "status-DEAD" in r.text
    assert "Traceback: &lt;script&gt;" in r.text


def test_failures_are_grouped(tails: Tails) -> None:
    text = client(tails, Guard.make("s3cret")).get("/failures").text
    assert "ValueError" in text and XSS not in text


def test_a_partial_request_gets_only_the_content_block(tails: Tails) -> None:
    r = client(tails, Guard.make("s3cret")).get("/", headers={"X-Partial": "1"})
    assert r.status_code == 200
    assert "<html" not in r.text and 'id="queue-default"' in r.text


def test_a_post_without_the_token_or_csrf_is_refused(tails: Tails) -> None:
    c = client(tails, Guard.make("s3cret"))
    # no token at all
    assert c.post("/dlq/default/redrive", data={"ref": "0:0"}).status_code == 403
    # logged in, but no CSRF field
    c.cookies.set(COOKIE, "s3cret")
    r = c.post("/dlq/default/redrive", data={"ref": "0:0"})
    assert r.status_code == 403 and "CSRF" in r.text
    # a wrong token with some CSRF value
    c.cookies.set(COOKIE, "wrong")
    assert c.post("/dlq/default/redrive", data={"ref": "0:0", "csrf": "x"}).status_code == 403


def test_a_post_from_another_site_is_refused_even_with_token_and_csrf(tails: Tails) -> None:
    guard = Guard.make("s3cret")
    c = client(tails, guard)
    c.cookies.set(COOKIE, "s3cret")
    r = c.post(
        "/logout",
        data={"csrf": guard.csrf_for("s3cret")},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status_code == 403 and "another site" in r.text


def test_login_sets_the_cookie_and_the_forms_carry_the_csrf_field(tails: Tails) -> None:
    guard = Guard.make("s3cret")
    c = client(tails, guard)
    assert c.post("/login", data={"token": "nope"}).status_code == 403
    r = c.post("/login", data={"token": "s3cret", "next": "/failures"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/failures"
    page = c.get("/").text
    assert guard.csrf_for("s3cret") in page
    assert c.post("/logout", data={"csrf": guard.csrf_for("s3cret")}).status_code == 200


def test_read_only_refuses_actions_even_with_the_token(tails: Tails) -> None:
    guard = Guard.make("s3cret", read_only=True)
    c = client(tails, guard)
    c.cookies.set(COOKIE, "s3cret")
    r = c.post("/dlq/default/redrive", data={"ref": "0:0", "csrf": guard.csrf_for("s3cret")})
    assert r.status_code == 403 and "read-only" in r.text
    assert "log in" not in c.get("/").text


def test_a_public_address_needs_a_token() -> None:
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(ConfigError, match="--token"):
        check_bind("0.0.0.0", None)


def test_without_a_token_one_is_made() -> None:
    guard = Guard.make(None)
    assert guard.generated and len(guard.token) >= 16
    assert not guard.token_ok(None) and guard.csrf_for("x") == ""


def test_the_command_refuses_a_public_address_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAMTASKS_DASHBOARD_TOKEN", raising=False)
    r = CliRunner().invoke(cli, ["dashboard", "no.such:app", "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert "refusing to serve the dashboard on '0.0.0.0' without a token" in r.output


def test_a_queue_whose_lag_grew_for_minutes_gets_the_red_banner(tails: Tails) -> None:
    c = client(tails, Guard.make("s3cret"))
    assert "lag-alarm-default" not in c.get("/").text
    now = now_ms()
    for s in range(240, -1, -10):
        tails.agg.record_lag("default", now - s * 1000, 400.0 - s)
    assert 'id="lag-alarm-default"' in c.get("/").text


def test_workers_come_from_their_heartbeats(tails: Tails) -> None:
    now = now_ms()
    beat = WorkerHeartbeat(
        worker_id="w-<b>1</b>",
        host="box",
        pid=4242,
        group_id="g",
        queues=("default",),
        concurrency=8,
        in_flight=3,
        started_at=now - 120_000,
        interval_ms=2000,
        timestamp=now,
        counters={"succeeded": 5, "failed": 1},
        partitions=("ns.tasks.default[0]",),
    )
    tails.agg.record_heartbeat(beat.worker_id, beat)
    c = client(tails, Guard.make("s3cret"))
    page = c.get("/workers").text
    assert "w-&lt;b&gt;1&lt;/b&gt;" in page and "4242" in page and "2m" in page
    assert "succeeded 5" in page and "tasks.default 0" in page
    overview = c.get("/").text
    assert 'id="workers-online">1<' in overview and "failed 1" in overview


def test_a_task_event_becomes_a_timeline_line() -> None:
    ev = TaskEvent(
        "t",
        "add",
        "default",
        TaskEventType.FAILED,
        2,
        1000,
        "w",
        12.5,
        ErrorInfo("ValueError", "bad"),
    )
    line = timeline_entry(ev)
    assert (line.type, line.attempt, line.detail) == ("FAILED", 2, "ValueError: bad")
    ok = TaskEvent("t", "add", "default", TaskEventType.SUCCEEDED, 3, 2000, "w", 12.5)
    assert timeline_entry(ok).detail == "ran 12.5 ms"


def test_schedules_show_last_fire_leader_and_next_fire(app: App, tails: Tails) -> None:
    app.schedule("echo", every=timedelta(minutes=5), name="five", args=("hi",))
    fired = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    rows = schedule_rows(app, {"five": LastFire(fired, "five-fire-1", "sched-a")})
    assert [(r.name, r.leader, r.last_task_id) for r in rows] == [
        ("five", "sched-a", "five-fire-1")
    ]
    assert rows[0].next_fire > datetime.now(UTC) - timedelta(minutes=5)
    tails.schedules = rows
    page = client(tails, Guard.make("s3cret")).get("/schedules").text
    assert "sched-a" in page and "2026-01-01 12:00:00" in page


def test_without_the_extra_the_command_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "streamtasks.dashboard.server", raising=False)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    r = CliRunner().invoke(cli, ["dashboard", "no.such:app"])
    assert r.exit_code == 2
    assert "pip install 'streamtasks[dashboard]'" in r.output and "uvicorn" in r.output


def test_partitions_are_shown_per_topic_as_runs() -> None:
    parts = ["ns.tasks.default:0", "ns.tasks.default:1", "ns.tasks.default:2", "ns.chords[4]"]
    parts += ["ns.tasks.default:5", "odd-name"]
    assert compact_partitions(parts, "ns") == "chords 4; odd-name; tasks.default 0-2, 5"


@pytest.mark.parametrize(
    "sel", [{"refs": ["3:17"]}, {"task": "echo", "error_match": "Value.*"}], ids=["one", "filter"]
)
def test_the_redrive_confirmation_renders_for_one_record_and_for_a_filter(
    tails: Tails, sel: dict[str, object]
) -> None:
    # Given a logged-in operator and what a dry run would redrive
    guard = Guard.make("s3cret")
    report = RedriveReport((RedriveOutcome("3:17", "id-1", "would-redrive"),), dry_run=True)
    env = template_environment()
    html = env.get_template("redrive.html").render(
        nav=(),
        path="/dlq/default/redrive",
        app_name="unit",
        problems={},
        read_only=False,
        logged_in=True,
        csrf=guard.csrf_for("s3cret"),
        refresh=False,
        queue="default",
        sel=sel,
        report=report,
        done=False,
        selection_query=selection_query,
    )
    # Then the form carries the selection and the CSRF field
    assert guard.csrf_for("s3cret") in html and "would-redrive" in html
    assert ('name="ref" value="3:17"' in html) == ("refs" in sel)
    assert ('name="error" value="Value.*"' in html) == ("refs" not in sel)

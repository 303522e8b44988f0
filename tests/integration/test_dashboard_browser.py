"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright).

A broker, one worker with events on, the dashboard as a real ``streamtasks dashboard``
process; tasks that succeed, fail, retry and go DEAD. The browser logs in with the token,
reads the overview, a task's page and timeline, the dead letters, redrives the dead task after
its fix (it then succeeds), sees an argument ``<script>alert(1)</script>`` as text (no dialog
ever opens), and after a restart of the dashboard on an empty cache the same history.
Screenshots of every page go to ``tests/artifacts/dashboard/{broker}/``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamtasks import App, AsyncResult, TaskFailedError
from streamtasks.wire.envelope import TaskStatus
from tests.integration.conftest import ROOT, StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DASH_SPEC = "tests.integration.apps.dash:app"
TOKEN = "test-token-7f3a"
XSS = "<script>alert(1)</script>"
WAIT_MS = 20_000

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"{CHROMIUM} is missing: apt-get install -y chromium (Debian's package)",
        allow_module_level=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """``streamtasks dashboard`` as a process; ready when its overview answers."""

    def __init__(self, bootstrap: str, ns: str, cache: Path, log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "streamtasks", "-b", bootstrap, "dashboard", DASH_SPEC]
        cmd += ["--port", str(self.port), "--token", TOKEN, "--cache-dir", str(cache)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "STREAMTASKS_NAMESPACE": ns},
            )

    def wait_ready(self, page: sync_api.Page) -> None:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"dashboard exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/login", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        deadline = 200
        while not answers():
            deadline -= 1
            assert deadline > 0, f"dashboard never answered: {self.log.read_text()[-2000:]}"
            page.wait_for_timeout(100)  # the port opens once uvicorn runs: nothing to wait on

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def shots(broker_kind: str) -> Path:
    folder = ROOT / "tests" / "artifacts" / "dashboard" / broker_kind
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _outcome(result: AsyncResult) -> TaskStatus:
    with contextlib.suppress(TaskFailedError):  # a FAILURE or DEAD outcome is expected too
        result.get(timeout=60)
    return result.status


def test_the_dashboard_in_a_real_browser(
    app: App,
    ns: str,
    kafka_bootstrap: str,
    start_workers: StartWorkers,
    browser: sync_api.Browser,
    shots: Path,
    tmp_path: Path,
) -> None:
    expect = sync_api.expect
    flag = tmp_path / "fixed"
    # Given a worker (events on) and tasks that succeed, fail, retry and go DEAD
    start_workers(1, "--events", "--concurrency", "4")
    t = app.tasks
    ok = [t["add"].send(i, i) for i in range(3)]
    failed = t["fail"].send("nope")
    retried = t["flaky"].send(1)
    dead = t["needs_flag"].send(str(flag), 7)
    xss = t["echo_len"].send(XSS)
    statuses = {r.id: _outcome(r) for r in [*ok, failed, retried, dead, xss]}
    assert statuses[dead.id] == TaskStatus.DEAD and statuses[retried.id] == TaskStatus.SUCCESS

    dash = Dashboard(kafka_bootstrap, ns, tmp_path / "cache1", tmp_path / "dash.log")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        dash.wait_ready(page)
        # When the operator logs in with the token
        page.goto(dash.url + "/login")
        page.fill("#token", TOKEN)
        page.click("#login")
        # Then the overview shows the queue: 7 finished in the hour, 2 of them failed, 1 dead
        queue = page.locator("#queue-default")
        expect(queue.locator(".finished")).to_have_text("7", timeout=WAIT_MS)
        expect(queue.locator(".failed")).to_have_text("2", timeout=WAIT_MS)
        expect(queue.locator(".dlq-depth")).to_have_text("1", timeout=WAIT_MS)
        expect(page.locator("#workers-online")).to_have_text("1", timeout=WAIT_MS)
        page.screenshot(path=shots / "overview.png", full_page=True)

        # the retried task's page: its result and its timeline
        page.goto(f"{dash.url}/tasks?id={retried.id}")
        expect(page.locator("#task-result")).to_contain_text("SUCCESS")
        expect(page.locator("#task-result")).to_contain_text("2")  # attempts
        timeline = page.locator("#timeline")
        for kind in ("RECEIVED", "STARTED", "RETRIED", "SUCCEEDED"):
            expect(timeline.locator(f"tr.event-{kind}").first).to_be_visible(timeout=WAIT_MS)
        expect(timeline.locator("tr.event-RETRIED")).to_contain_text("ConnectionError")
        page.screenshot(path=shots / "task.png", full_page=True)

        # the XSS argument is text, not markup
        page.goto(f"{dash.url}/tasks?id={xss.id}")
        expect(page.locator("#task-args")).to_have_text(f"(text={XSS!r})")
        assert page.locator("#task-args script").count() == 0
        page.screenshot(path=shots / "task-xss.png", full_page=True)

        page.goto(dash.url + "/tasks")
        expect(page.locator("#recent")).to_contain_text(dead.id)
        page.screenshot(path=shots / "tasks.png", full_page=True)
        page.goto(dash.url + "/failures")
        expect(page.locator("#failures")).to_contain_text("FileNotFoundError")
        expect(page.locator("#failures")).to_contain_text("ValueError")
        page.screenshot(path=shots / "failures.png", full_page=True)

        # the dead letter is listed; its page has the decoded arguments and the traceback
        page.goto(dash.url + "/dlq")
        letter = page.locator("#letters tr.letter", has_text=dead.id)
        expect(letter).to_contain_text("needs_flag")
        page.screenshot(path=shots / "dlq.png", full_page=True)
        letter.locator("td a").first.click()
        expect(page.locator("#letter-args")).to_have_text(f"(path={str(flag)!r}, i=7)")
        page.screenshot(path=shots / "dead-letter.png", full_page=True)

        # the filtered set's confirmation lists what it would redrive, and changes nothing
        page.goto(dash.url + "/dlq?task=needs_flag")
        page.click("#redrive-all")
        expect(page.locator("table")).to_contain_text("would-redrive")
        expect(page.locator("table")).to_contain_text(dead.id)
        page.goto(dash.url + "/dlq")
        expect(letter).to_contain_text("needs_flag")
        letter.locator("td a").first.click()

        # When the bug is fixed and the operator redrives it, behind the confirmation
        flag.touch()
        page.locator("a.redrive-one").click()
        page.screenshot(path=shots / "redrive-confirm.png", full_page=True)
        page.click("#confirm-redrive")
        expect(page.locator("#redrive-summary")).to_contain_text("redriven 1 of 1")
        # Then the task runs again and succeeds, and the dashboard shows it
        assert AsyncResult(dead.id, app=app).get(timeout=60) == 7
        page.goto(f"{dash.url}/tasks?id={dead.id}")
        expect(page.locator("#task-result")).to_contain_text("SUCCESS", timeout=WAIT_MS)
        page.goto(dash.url + "/")
        expect(queue.locator(".failed")).to_have_text("1", timeout=WAIT_MS)
        expect(queue.locator(".dlq-depth")).to_have_text("0", timeout=WAIT_MS)
        before = {k: queue.locator(f".{k}").inner_text() for k in ("finished", "failed")}
        page.goto(dash.url + "/schedules")
        expect(page.locator("#schedules")).to_contain_text("hourly-add")
        page.screenshot(path=shots / "schedules.png", full_page=True)
        page.goto(dash.url + "/workers")
        worker = page.locator("#workers tr.worker.online")
        expect(worker).to_have_count(1, timeout=WAIT_MS)  # from its heartbeats
        expect(worker).to_contain_text("default")
        expect(worker).to_contain_text("succeeded")
        page.screenshot(path=shots / "workers.png", full_page=True)
    finally:
        dash.stop()

    # When the dashboard restarts without its cache file, Then the history is the same
    dash = Dashboard(kafka_bootstrap, ns, tmp_path / "cache2", tmp_path / "dash.log")
    try:
        dash.wait_ready(page)
        page.goto(dash.url + "/")
        for k, v in before.items():
            expect(queue.locator(f".{k}")).to_have_text(v, timeout=WAIT_MS)
        expect(queue.locator(".dlq-depth")).to_have_text("0", timeout=WAIT_MS)
        expect(page.locator("#workers-online")).to_have_text("1", timeout=WAIT_MS)
        page.screenshot(path=shots / "overview-after-restart.png", full_page=True)
        page.goto(f"{dash.url}/tasks?id={dead.id}")
        expect(page.locator("#task-result")).to_contain_text("SUCCESS", timeout=WAIT_MS)
        page.goto(f"{dash.url}/tasks?id={retried.id}")
        expect(page.locator("#timeline tr.event-SUCCEEDED")).to_have_count(1, timeout=WAIT_MS)
    finally:
        dash.stop()
    assert dialogs == []  # no script from task data ever ran

"""The command line: every command's --help, topics apply, send/result, config errors, demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from typer.testing import CliRunner

from streamtasks.cli import cli
from tests.integration.conftest import APP_SPEC, ROOT, StartWorkers, run_cli

runner = CliRunner()

COMMANDS = [
    ["broker"],
    ["worker"],
    ["topics"],
    ["topics", "apply"],
    ["send"],
    ["result"],
    ["demo"],
    ["scheduler"],
    ["revoke"],
    ["results", "expire"],
    ["schedules"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "redrive"],
    ["dlq", "purge"],
    ["schemas", "export"],
    ["schemas", "check"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    if command != ["topics"]:
        assert "Example:" in result.output


def test_root_help_lists_the_commands() -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("broker", "worker", "topics", "send", "result", "demo"):
        assert name in result.output


_run = run_cli


def test_a_worker_without_a_bootstrap_address_fails_fast_with_a_fix_it_message() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMTASKS_")}
    proc = subprocess.run(
        [sys.executable, "-m", "streamtasks", "worker", APP_SPEC],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "STREAMTASKS_BOOTSTRAP_SERVERS" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_bad_app_spec_is_a_clear_error() -> None:
    proc = _run("worker", "no_such_module:app", env={"STREAMTASKS_BOOTSTRAP_SERVERS": "x:1"})
    assert proc.returncode == 2
    assert "cannot import 'no_such_module'" in proc.stderr


def test_an_unreachable_broker_is_a_clear_error() -> None:
    proc = _run("-b", "127.0.0.1:1", "topics", "apply", APP_SPEC)
    assert proc.returncode == 1
    assert "the Kafka broker at 127.0.0.1:1 could not be reached" in proc.stderr


@pytest.mark.integration
def test_topics_apply_is_idempotent_and_compacts_results(kafka_bootstrap: str) -> None:
    from streamtasks.testing import unique_name

    env = {"STREAMTASKS_NAMESPACE": unique_name("cli")}
    first = _run("-b", kafka_bootstrap, "topics", "apply", APP_SPEC, env=env)
    assert first.returncode == 0, first.stderr
    ns = env["STREAMTASKS_NAMESPACE"]
    assert f"created  {ns}.tasks.default\n" in first.stdout
    assert f"created  {ns}.results\n" in first.stdout
    assert f"created  {ns}.replays\n" in first.stdout
    second = _run("-b", kafka_bootstrap, "topics", "apply", APP_SPEC, env=env)
    assert second.returncode == 0
    assert "created" not in second.stdout and f"exists   {ns}.results" in second.stdout
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, f"{ns}.results")
    configs = admin.describe_configs([res])[res].result()
    assert configs["cleanup.policy"].value == "compact"


@pytest.mark.integration
def test_send_with_wait_and_result_show_the_value(
    start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    env = {"STREAMTASKS_NAMESPACE": ns}
    sent = _run(
        "-b", kafka_bootstrap, "send", APP_SPEC, "add", "--args", "[40, 2]", "--wait", "30", env=env
    )
    assert sent.returncode == 0, sent.stderr
    task_id, value = sent.stdout.split()
    assert value == "42"
    shown = _run("-b", kafka_bootstrap, "result", task_id, "--app", APP_SPEC, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    assert '"status": "SUCCESS"' in shown.stdout and '"value": 42' in shown.stdout
    # a dataclass argument given as a JSON object, an enum by its member name
    item = '{"name": "box", "shape": "SQUARE", "size": 2.0, "tags": ["a"], "made": 0}'
    sent = _run(
        "-b",
        kafka_bootstrap,
        "send",
        APP_SPEC,
        "summarize",
        "--args",
        f"[{item}]",
        "--wait",
        "30",
        env=env,
    )
    assert sent.returncode == 0, sent.stderr
    assert '{"label": "box@1970", "area": 4.0, "tag_count": {"a": 1}}' in sent.stdout
    # and a wrong type is refused with the parameter named
    bad = _run("-b", kafka_bootstrap, "send", APP_SPEC, "add", "--args", '["x", 1]', env=env)
    assert bad.returncode == 1 and "parameter 'x': expected int, got str" in bad.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_the_demo_runs_to_completion() -> None:
    env = {k: v for k, v in os.environ.items() if k != "STREAMTASKS_BOOTSTRAP_SERVERS"}
    proc = subprocess.run(
        [sys.executable, "-m", "streamtasks", "demo", "--tasks", "600"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "600/600 tasks finished" in proc.stdout

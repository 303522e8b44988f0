"""The ``streamtasks`` command line: a thin layer over the library (typer).

Every command is a few lines calling library code; library errors are printed as one clear
line (exit code 2 for configuration mistakes, 1 otherwise), never as a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from streamtasks.cli.common import (
    AppArg,
    LegacyAppOpt,
    app_and_id,
    fail,
    jsonable,
    require_broker,
    timestamp,
)
from streamtasks.cli.dlq import dlq_cli
from streamtasks.cli.events import events_command
from streamtasks.cli.ops import register as register_ops
from streamtasks.cli.schemas import schemas_cli
from streamtasks.errors import BrokerError, ConfigError, DeliveryError, StreamtasksError
from streamtasks.logs import LogFormat, configure_logging

__all__ = ["main"]

# Commands of the design that this version does not have yet: naming one says so, instead
# of suggesting an unrelated command that merely looks alike ('schemas' -> 'schedules').
_NOT_BUILT = ("dashboard",)


class _Commands(TyperGroup):
    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in _NOT_BUILT and self.get_command(ctx, args[0]) is None:
            ctx.fail(
                f"No such command {args[0]!r}: it is not part of this version of streamtasks "
                "(see --help for the commands there are)."
            )
        return super().resolve_command(ctx, args)


cli = typer.Typer(
    cls=_Commands,
    name="streamtasks",
    help="Kafka-native distributed task processing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_cli = typer.Typer(help="Manage the app's Kafka topics.", no_args_is_help=True)
cli.add_typer(topics_cli, name="topics")
cli.add_typer(dlq_cli, name="dlq")
register_ops(cli)  # replay, status, offsets reset
cli.command("events")(events_command)
cli.add_typer(schemas_cli, name="schemas")


@cli.callback()
def _root(
    log_format: Annotated[
        str, typer.Option("--log-format", help="console or json", envvar="STREAMTASKS_LOG_FORMAT")
    ] = "console",
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level", help="debug, info, warning, error", envvar="STREAMTASKS_LOG_LEVEL"
        ),
    ] = "info",
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            "-b",
            help="Kafka bootstrap address; overrides STREAMTASKS_BOOTSTRAP_SERVERS.",
        ),
    ] = None,
) -> None:
    if log_format not in ("console", "json"):
        fail(ConfigError(f"--log-format must be 'console' or 'json', not {log_format!r}"))
    try:
        fmt: LogFormat = "json" if log_format == "json" else "console"
        configure_logging(fmt, log_level)
    except ValueError as exc:
        fail(ConfigError(str(exc)))
    if bootstrap_servers:
        os.environ["STREAMTASKS_BOOTSTRAP_SERVERS"] = bootstrap_servers


@cli.command()
def broker(
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: a free one).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    engine: Annotated[
        str,
        typer.Option(
            help="tansu (embedded, in memory, starts at once) or kafka (Apache Kafka: Java 17+; "
            "the first run resolves its jars with Maven)."
        ),
    ] = "tansu",
    data_dir: Annotated[
        str | None,
        typer.Option(help="kafka: keep the log here and reuse it (default: a temporary dir)."),
    ] = None,
    env: Annotated[
        bool,
        typer.Option(
            "--env",
            help="Print only the client environment ('export NAME=value' lines) for a .env "
            "file or a shell's `source`.",
        ),
    ] = False,
) -> None:
    """Start a development broker (Tansu by default, or Apache Kafka); print its bootstrap
    address and the client settings that suit it (fast group joins and low latency).

    Example: streamtasks broker --port 9092   (Ctrl-C stops it)
    Example: streamtasks broker --port 9092 --env > .env &   then: source .env
    """
    from streamtasks.dev.broker import EmbeddedBroker, client_env, serve_forever
    from streamtasks.dev.kafka import KafkaBroker

    def ready(bootstrap: str) -> None:
        settings = client_env(bootstrap)
        if env:
            for name, value in settings.items():
                typer.echo(f"export {name}={value}")
            sys.stdout.flush()
            return
        typer.echo(f"broker ready: STREAMTASKS_BOOTSTRAP_SERVERS={bootstrap}")
        typer.echo("client settings that suit this broker (export them in the shells you use):")
        for name, value in settings.items():
            typer.echo(f"  export {name}={value}")
        typer.echo("(`streamtasks broker --env` prints just these lines, e.g. for a .env file)")
        sys.stdout.flush()

    try:
        if engine == "tansu":
            if data_dir is not None:
                raise ConfigError("--data-dir needs --engine kafka (Tansu keeps data in memory)")
            code = serve_forever(EmbeddedBroker(host=host, port=port), ready)
        elif engine == "kafka":
            kafka = KafkaBroker(host=host, port=port, data_dir=data_dir)
            try:
                code = serve_forever(kafka, ready, start_timeout=90.0)
            finally:
                kafka.close()
        else:
            raise ConfigError(f"--engine must be 'tansu' or 'kafka', not {engine!r}")
    except StreamtasksError as exc:
        fail(exc)
    raise typer.Exit(code)


@cli.command()
def worker(
    app: AppArg,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Tasks run at once (threads).")
    ] = 8,
    queues: Annotated[
        str | None, typer.Option("--queues", "-Q", help="Comma-separated queues (default: all).")
    ] = None,
    async_concurrency: Annotated[
        int, typer.Option(help="async def tasks awaited at once (one event loop).")
    ] = 100,
    process_concurrency: Annotated[
        int | None, typer.Option(help="Child processes for pool='process' tasks (default: CPUs).")
    ] = None,
    group_id: Annotated[str | None, typer.Option(help="Consumer group (default: derived).")] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Received-but-unfinished tasks before partitions are paused.")
    ] = None,
    max_in_flight_per_partition: Annotated[
        int | None, typer.Option(help="Unfinished tasks of one partition before it is paused.")
    ] = None,
    shutdown_grace: Annotated[
        float, typer.Option(help="Seconds SIGTERM waits for in-flight tasks.")
    ] = 30.0,
    cooperative: Annotated[
        bool,
        typer.Option(help="Cooperative (incremental) rebalancing: only moved partitions stop."),
    ] = False,
    processes: Annotated[
        int,
        typer.Option(help="Worker processes to run under a supervisor that restarts crashes."),
    ] = 1,
    burst: Annotated[
        bool,
        typer.Option(help="Exit 0 once the queues are drained and no retry is pending."),
    ] = False,
    group_protocol: Annotated[
        str,
        typer.Option(help="classic, or consumer (KIP-848: assignment by the broker; Kafka 4.0+)."),
    ] = "classic",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on http://HOST:PORT/metrics."),
    ] = None,
    metrics_lag_interval: Annotated[
        float, typer.Option(help="Seconds between consumer-lag samples for the metrics.")
    ] = 5.0,
    metrics_record: Annotated[
        bool, typer.Option(hidden=True, help="Keep metrics for a supervisor that serves them.")
    ] = False,
    events: Annotated[
        bool,
        typer.Option(
            "--events", "-E", help="Write per-task lifecycle events to {ns}.events (like -E)."
        ),
    ] = False,
    heartbeat_interval: Annotated[
        float, typer.Option(help="Seconds between the worker's heartbeats on {ns}.events.")
    ] = 5.0,
) -> None:
    """Run tasks of APP as a member of its consumer group.

    SIGTERM drains in-flight tasks and commits; a second signal stops at once.

    Example: streamtasks worker myproj.tasks:app --concurrency 16 --queues default,emails
    Example: streamtasks worker myproj.tasks:app --processes 4   (one per core, supervised)
    Example: streamtasks worker myproj.tasks:app --burst   (drain the queues, commit, exit 0)
    Example: streamtasks worker myproj.tasks:app --processes 2 --metrics-port 9100
    Example: streamtasks worker myproj.tasks:app --events   (then: streamtasks events APP -f)
    """
    from streamtasks._loading import load_app
    from streamtasks.worker import Worker

    try:
        the_app = load_app(app)  # fail fast in the supervisor too
        if processes < 1:
            raise ConfigError(f"--processes must be >= 1, got {processes}")
        if burst and processes > 1:
            raise ConfigError("--burst runs one process: start several `worker --burst` instead")
        if processes > 1:
            from streamtasks.worker.supervisor import Supervisor, child_args

            supervisor = Supervisor(child_args(sys.argv[1:]), processes, metrics_port=metrics_port)
            raise typer.Exit(supervisor.run())
        w = Worker(
            the_app,
            queues=[q.strip() for q in queues.split(",") if q.strip()] if queues else None,
            concurrency=concurrency,
            async_concurrency=async_concurrency,
            process_concurrency=process_concurrency,
            app_spec=app,
            group_id=group_id,
            max_in_flight=max_in_flight,
            max_in_flight_per_partition=max_in_flight_per_partition,
            cooperative=cooperative,
            shutdown_grace=shutdown_grace,
            group_protocol=group_protocol,
            metrics_port=metrics_port,
            metrics=metrics_record,
            metrics_lag_interval=metrics_lag_interval,
            events=True if events else None,
            heartbeat_interval=heartbeat_interval,
        )
        w.run(burst=burst)
    except StreamtasksError as exc:
        fail(exc)


@cli.command()
def scheduler(app: AppArg) -> None:
    """Publish APP's periodic tasks. Run 2+ replicas: one leads, the others stand by.

    Each schedule fires once per fire time across replicas and restarts; SIGTERM stops it
    (another replica takes over at once).

    Example: streamtasks scheduler myproj.tasks:app
    """
    from streamtasks._loading import load_app
    from streamtasks.scheduler import Scheduler

    try:
        Scheduler(load_app(app)).run()
    except StreamtasksError as exc:
        fail(exc)


@cli.command()
def schedules(
    app: AppArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List APP's schedules with their next fire times and last recorded fire.

    Example: streamtasks schedules myproj.tasks:app --json
    """
    from datetime import UTC, datetime

    from streamtasks._loading import load_app
    from streamtasks.schedules import next_fire

    try:
        the_app = load_app(app)
        state: dict[str, Any] = {}
        if the_app.settings.bootstrap_servers:
            from streamtasks.scheduler import read_state

            require_broker(the_app)
            state = read_state(the_app)
    except StreamtasksError as exc:
        fail(exc)
    now = datetime.now(UTC)
    rows = []
    for s in sorted(the_app.schedules.values(), key=lambda s: s.name):
        last = state.get(s.name)
        rows.append(
            {
                "name": s.name,
                "task": s.task_name,
                "when": f"cron {s.cron} ({s.tz})" if s.cron else f"every {s.every}",
                "misfire": s.misfire,
                "next_fire": next_fire(s, now).isoformat(),
                "last_fire": last[0].isoformat() if last else None,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    def shown(iso: str | None) -> str:
        return (
            "-" if iso is None else timestamp(int(datetime.fromisoformat(iso).timestamp() * 1000))
        )

    table = Table(title=f"schedules of {the_app.name}", box=None, padding=(0, 1, 0, 0))
    for col in ("name", "task", "when", "misfire", "next fire", "last fire"):
        table.add_column(col, overflow="fold", min_width=20 if col.endswith(" fire") else None)
    for r in rows:
        table.add_row(
            r["name"],
            r["task"],
            r["when"],
            r["misfire"],
            shown(r["next_fire"]),
            shown(r["last_fire"]),
        )
    Console().print(table)


@topics_cli.command("apply")
def topics_apply(app: AppArg) -> None:
    """Create APP's topics if missing (idempotent; existing topics are left as they are).

    Example: streamtasks topics apply myproj.tasks:app
    """
    from streamtasks._loading import load_app
    from streamtasks.kafka import clients

    try:
        the_app = load_app(app)
        outcome = the_app.apply_topics()
    except StreamtasksError as exc:
        fail(exc)
    for name, state in sorted(outcome.items()):
        typer.echo(f"{state:8} {name}")
    problems = clients.partition_mismatches(outcome, the_app.topic_specs())
    if problems:  # each was logged with its fix by apply_topics
        typer.secho(
            f"error: {len(problems)} topic(s) exist with another partition count than the "
            "app's config; the warnings above say how to fix them",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)


@cli.command()
def send(
    app: AppArg,
    task: Annotated[str, typer.Argument(help="Task name (as registered).")],
    args: Annotated[str, typer.Option(help="JSON list of positional arguments.")] = "[]",
    kwargs: Annotated[str, typer.Option(help="JSON object of keyword arguments.")] = "{}",
    key: Annotated[str | None, typer.Option(help="Ordering key.")] = None,
    wait: Annotated[
        float | None, typer.Option(help="Wait this many seconds for the result.")
    ] = None,
) -> None:
    """Send one task and print its id (with --wait, also its result).

    Arguments are JSON; a dataclass argument is a JSON object, an enum its member name.

    Example: streamtasks send myproj.tasks:app myproj.tasks.add --args '[1, 2]' --wait 10
    """
    from streamtasks._loading import load_app

    try:
        the_app = load_app(app)
        t = the_app.tasks.get(task)
        if t is None:
            raise ConfigError(f"unknown task {task!r}; known: {sorted(the_app.tasks)}")
        try:
            pos, kw = json.loads(args), json.loads(kwargs)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--args/--kwargs must be JSON: {exc}") from exc
        if isinstance(pos, dict):
            raise ConfigError(
                f"--args must be a JSON list of positional arguments, got an object; pass "
                f"named arguments with --kwargs '{args}'"
            )
        if not isinstance(pos, list) or not isinstance(kw, dict):
            raise ConfigError(
                "--args must be a JSON list (e.g. '[1, 2]') and --kwargs a JSON object "
                "(e.g. '{\"x\": 1}')"
            )
        call_args, call_kwargs = t.signature.from_plain(pos, kw)
        try:
            the_app.check_broker(timeout=5.0)
        except BrokerError as exc:
            raise DeliveryError(f"{exc} The task was NOT enqueued.") from exc
        res = t.apply_async(call_args, call_kwargs, key=key, wait_delivery=True)
        typer.echo(res.id)
        if wait is not None:
            typer.echo(json.dumps(jsonable(res.get(timeout=wait))))
    except StreamtasksError as exc:
        fail(exc)
    finally:
        if "the_app" in locals():
            the_app.close()


@cli.command()
def result(
    app_arg: Annotated[
        str, typer.Argument(metavar="APP", help="The app to load, as 'package.module:app'.")
    ],
    task_id_arg: Annotated[
        str | None, typer.Argument(metavar="TASK_ID", help="The task id.")
    ] = None,
    legacy_app: LegacyAppOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to read the results topic.")] = 10.0,
    db: Annotated[
        str | None,
        typer.Option(help="The result store's SQLite file (default: in ~/.cache/streamtasks)."),
    ] = None,
) -> None:
    """Show the stored result of one task (from the local result store, synced first).

    Example: streamtasks result myproj.tasks:app 3f2a... --json
    """
    from streamtasks._loading import load_app
    from streamtasks.ops.store import ResultStore

    try:
        app, task_id = app_and_id(app_arg, task_id_arg, legacy_app)
        the_app = load_app(app)
        require_broker(the_app)
        with ResultStore(the_app, db) as store:
            store.sync(timeout=timeout)
            rec = store.get(task_id)
        if rec is None:
            typer.echo(f"{task_id}: no result (PENDING or unknown)")
            raise typer.Exit(1)
        out: dict[str, Any] = {
            "task_id": rec.task_id,
            "task": rec.task,
            "status": rec.status.value,
            "attempts": rec.attempts,
            "worker_id": rec.worker_id,
            "created_at": rec.created_at,
            "finished_at": rec.finished_at,
        }
        if rec.status.value == "SUCCESS":
            task = the_app.tasks.get(rec.task)
            if task is None:
                raise StreamtasksError(
                    f"cannot decode the result of task {rec.task!r}: it is not registered in "
                    f"app {the_app.name!r}"
                )
            out["value"] = jsonable(None if rec.value is None else task.decode_result(rec.value))
        if rec.error is not None:
            out["error"] = {"type": rec.error.type, "message": rec.error.message}
        if as_json:
            typer.echo(json.dumps(out, indent=2))
        else:
            for k, v in out.items():
                shown = timestamp(v) if k in ("created_at", "finished_at") else v
                typer.echo(f"{k:12} {shown}")
    except StreamtasksError as exc:
        fail(exc)


results_cli = typer.Typer(help="The local result store of the results topic.", no_args_is_help=True)
cli.add_typer(results_cli, name="results")


@results_cli.command("expire")
def results_expire(
    app_arg: Annotated[
        str | None,
        typer.Argument(metavar="APP", help="The app to load, as 'package.module:app'."),
    ] = None,
    legacy_app: LegacyAppOpt = None,
    older_than: Annotated[
        float | None,
        typer.Option(help="Seconds a final result is kept (default: STREAMTASKS_RESULT_TTL)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be expired.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to read the results topic.")] = 30.0,
    db: Annotated[
        str | None,
        typer.Option(help="The result store's SQLite file (default: in ~/.cache/streamtasks)."),
    ] = None,
) -> None:
    """Expire final results older than a TTL: write tombstones to the results topic.

    Run it on a schedule (e.g. cron) to bound the results topic.

    Example: streamtasks results expire myproj.tasks:app --older-than 604800 --dry-run
    """
    from streamtasks._loading import load_app
    from streamtasks.ops.store import ResultStore

    try:
        app = app_arg or legacy_app
        if app is None:
            raise ConfigError("missing the app: streamtasks results expire APP")
        if app_arg is None:
            typer.secho("warning: --app is deprecated; pass the app first", err=True)
        the_app = load_app(app)
        require_broker(the_app)
        with ResultStore(the_app, db) as store:
            count = store.expire(older_than, dry_run=dry_run, timeout=timeout)
        the_app.close()
    except StreamtasksError as exc:
        fail(exc)
    typer.echo(f"{'would expire' if dry_run else 'expired'} {count} results")


@cli.command()
def revoke(
    app_arg: Annotated[
        str, typer.Argument(metavar="APP", help="The app to load, as 'package.module:app'.")
    ],
    task_id_arg: Annotated[
        str | None, typer.Argument(metavar="TASK_ID", help="The task id.")
    ] = None,
    legacy_app: LegacyAppOpt = None,
) -> None:
    """Make sure no worker starts a queued task (persistently); it ends REVOKED.

    Example: streamtasks revoke myproj.tasks:app 3f2a...
    """
    from streamtasks._loading import load_app

    try:
        app, task_id = app_and_id(app_arg, task_id_arg, legacy_app)
        the_app = load_app(app)
        require_broker(the_app)
        the_app.revoke(task_id)
        the_app.close()
    except StreamtasksError as exc:
        fail(exc)
    typer.echo(f"revoked {task_id}")


@cli.command()
def demo(
    tasks: Annotated[int, typer.Option(help="How many tasks to send.")] = 2000,
    workers: Annotated[int, typer.Option(help="Worker processes to start.")] = 2,
) -> None:
    """Run the demo: embedded broker, worker processes, a mixed batch, a summary.

    Example: streamtasks demo --tasks 2000 --workers 2
    (With --bootstrap-servers / STREAMTASKS_BOOTSTRAP_SERVERS it uses that Kafka instead.)
    """
    from streamtasks.demo.run import run_demo

    try:
        code = run_demo(n_tasks=tasks, n_workers=workers)
    except StreamtasksError as exc:
        fail(exc)
    raise typer.Exit(code)


def main() -> None:
    from streamtasks.kafka import KafkaException

    try:
        cli()
    except KafkaException as exc:  # a client error no command translated: still one line
        err = exc.args[0] if exc.args else exc
        text = err.str() if hasattr(err, "str") else str(err)
        typer.secho(f"error: Kafka: {text}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()

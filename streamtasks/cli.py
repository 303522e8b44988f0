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

from streamtasks.errors import ConfigError, StreamtasksError
from streamtasks.logs import LogFormat, configure_logging

__all__ = ["main"]

cli = typer.Typer(
    name="streamtasks",
    help="Kafka-native distributed task processing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
topics_cli = typer.Typer(help="Manage the app's Kafka topics.", no_args_is_help=True)
cli.add_typer(topics_cli, name="topics")

AppArg = Annotated[str, typer.Argument(help="The app to load, as 'package.module:app'.")]


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
        _fail(ConfigError(f"--log-format must be 'console' or 'json', not {log_format!r}"))
    try:
        fmt: LogFormat = "json" if log_format == "json" else "console"
        configure_logging(fmt, log_level)
    except ValueError as exc:
        _fail(ConfigError(str(exc)))
    if bootstrap_servers:
        os.environ["STREAMTASKS_BOOTSTRAP_SERVERS"] = bootstrap_servers


def _fail(exc: BaseException) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 1)


@cli.command()
def broker(
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: a free one).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Start the embedded development broker (Tansu) and print its bootstrap address.

    Example: streamtasks broker --port 9092   (Ctrl-C stops it)
    """
    from streamtasks.devbroker import EmbeddedBroker, serve_forever

    def ready(bootstrap: str) -> None:
        typer.echo(f"broker ready: STREAMTASKS_BOOTSTRAP_SERVERS={bootstrap}")

    try:
        code = serve_forever(EmbeddedBroker(host=host, port=port), ready)
    except StreamtasksError as exc:
        _fail(exc)
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
) -> None:
    """Run tasks of APP as a member of its consumer group.

    SIGTERM drains in-flight tasks and commits; a second signal stops at once.

    Example: streamtasks worker myproj.tasks:app --concurrency 16 --queues default,emails
    Example: streamtasks worker myproj.tasks:app --processes 4   (one per core, supervised)
    """
    from streamtasks._loading import load_app
    from streamtasks.worker import Worker

    try:
        the_app = load_app(app)  # fail fast in the supervisor too
        if processes < 1:
            raise ConfigError(f"--processes must be >= 1, got {processes}")
        if processes > 1:
            from streamtasks.supervisor import Supervisor, child_args

            raise typer.Exit(Supervisor(child_args(sys.argv[1:]), processes).run())
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
        )
        w.run()
    except StreamtasksError as exc:
        _fail(exc)


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
        _fail(exc)


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

            state = read_state(the_app)
    except StreamtasksError as exc:
        _fail(exc)
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

    table = Table(title=f"schedules of {the_app.name}")
    for col in ("name", "task", "when", "misfire", "next_fire", "last_fire"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(r[c]) if r[c] is not None else "-" for c in r))
    Console().print(table)


@topics_cli.command("apply")
def topics_apply(app: AppArg) -> None:
    """Create APP's topics if missing (idempotent; existing topics are left as they are).

    Example: streamtasks topics apply myproj.tasks:app
    """
    from streamtasks._loading import load_app

    try:
        outcome = load_app(app).apply_topics()
    except StreamtasksError as exc:
        _fail(exc)
    for name, state in sorted(outcome.items()):
        typer.echo(f"{state:8} {name}")


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
        if not isinstance(pos, list) or not isinstance(kw, dict):
            raise ConfigError("--args must be a JSON list and --kwargs a JSON object")
        call_args, call_kwargs = t.signature.from_plain(pos, kw)
        res = t.apply_async(call_args, call_kwargs, key=key)
        the_app.flush()
        typer.echo(res.id)
        if wait is not None:
            typer.echo(json.dumps(_jsonable(res.get(timeout=wait))))
    except StreamtasksError as exc:
        _fail(exc)
    finally:
        if "the_app" in locals():
            the_app.close()


@cli.command()
def result(
    task_id: Annotated[str, typer.Argument(help="The task id.")],
    app: Annotated[
        str,
        typer.Option(
            "--app", "-A", envvar="STREAMTASKS_APP", help="The app, as 'package.module:app'."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to read the results topic.")] = 10.0,
) -> None:
    """Show the stored result of one task.

    Example: streamtasks result 3f2a... --app myproj.tasks:app --json
    """
    from streamtasks._loading import load_app

    try:
        the_app = load_app(app)
        listener = the_app.results_listener(history=True)
        listener.wait_caught_up(timeout)
        rec = listener.peek(task_id)
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
            out["value"] = _jsonable(the_app.AsyncResult(task_id).get(timeout=timeout))
        if rec.error is not None:
            out["error"] = {"type": rec.error.type, "message": rec.error.message}
        if as_json:
            typer.echo(json.dumps(out, indent=2))
        else:
            for k, v in out.items():
                typer.echo(f"{k:12} {v}")
    except StreamtasksError as exc:
        _fail(exc)


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
        _fail(exc)
    raise typer.Exit(code)


# -- dlq ----------------------------------------------------------------------------------------

dlq_cli = typer.Typer(
    help="Inspect, redrive and purge dead letters (a queue's .dlq topic).", no_args_is_help=True
)
cli.add_typer(dlq_cli, name="dlq")

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="The queue whose DLQ to use.")]
TaskOpt = Annotated[str | None, typer.Option("--task", help="Only dead letters of this task.")]
ErrorMatchOpt = Annotated[
    str | None,
    typer.Option("--error-match", help="Only errors matching this regex ('Type: message')."),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Only this st-dlq-reason (e.g. max-attempts, undecodable)."),
]


@dlq_cli.command("list")
def dlq_list(
    app: AppArg,
    queue: QueueOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="Also show dead letters already redriven or purged.")
    ] = False,
    limit: Annotated[int | None, typer.Option(help="Show at most N (oldest first).")] = None,
) -> None:
    """List the dead letters of a queue: ref, task id, task, reason, error, attempts, age.

    Example: streamtasks dlq list myproj.tasks:app --queue emails --limit 20
    """
    from rich.console import Console
    from rich.table import Table

    from streamtasks._loading import load_app
    from streamtasks.dlq import DeadLetterQueue, format_age, truncate
    from streamtasks.envelope import now_ms

    try:
        dlq = DeadLetterQueue(load_app(app), queue)
        letters = dlq.read(include_done=show_all)
    except StreamtasksError as exc:
        _fail(exc)
    shown = letters if limit is None else letters[:limit]
    if as_json:
        typer.echo(json.dumps([d.to_json() for d in shown], indent=2))
        return
    now = now_ms()
    table = Table(title=f"{dlq.topic}: {len(letters)} {'letters' if show_all else 'dead'}")
    for column in ("ref", "task id", "task", "reason", "error", "attempts", "age"):
        table.add_column(column, no_wrap=column != "error", overflow="fold")
    if show_all:
        table.add_column("state")
    for d in shown:
        row = [
            d.ref,
            d.task_id or "-",
            d.task or "-",
            d.reason,
            truncate(d.error, 60),
            "-" if d.attempts is None else str(d.attempts),
            format_age(d.failed_at_ms, now),
        ]
        table.add_row(*row, *([d.state] if show_all else []))
    console = Console()
    console.print(table)
    if len(shown) < len(letters):
        console.print(f"showing {len(shown)} of {len(letters)}; raise --limit to see more")


@dlq_cli.command("show")
def dlq_show(
    app: AppArg,
    ref: Annotated[str, typer.Argument(help="A ref 'partition:offset' or a task id.")],
    queue: QueueOpt = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one dead letter: every header, the decoded arguments, the traceback.

    Example: streamtasks dlq show myproj.tasks:app 3:1042
    """
    from streamtasks._loading import load_app
    from streamtasks.dlq import DeadLetterQueue

    try:
        dlq = DeadLetterQueue(load_app(app), queue)
        letter = dlq.get(ref)
    except StreamtasksError as exc:
        _fail(exc)
    out = letter.to_json()
    try:
        args, kwargs = dlq.arguments(letter)
        out["args"], out["kwargs"] = _jsonable(list(args)), _jsonable(kwargs)
        call = [*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())]
        shown_args = f"{letter.task}({', '.join(call)})"
    except StreamtasksError as exc:
        out["args_error"] = shown_args = str(exc)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=repr))
        return
    for name in ("ref", "state", "task_id", "task", "reason", "attempts", "worker_id"):
        typer.echo(f"{name:14} {out[name]}")
    typer.echo(f"{'error':14} {letter.error}")
    typer.echo(f"{'origin':14} {letter.origin or '-'}")
    typer.echo(f"{'arguments':14} {shown_args}")
    typer.echo("headers:")
    for key, value in letter.headers.items():
        if key != "st-traceback":
            typer.echo(f"  {key}: {value}")
    typer.echo("traceback:" if letter.traceback else "traceback: (none recorded)")
    if letter.traceback:
        typer.echo(letter.traceback.rstrip())


@dlq_cli.command("redrive")
def dlq_redrive(
    app: AppArg,
    queue: QueueOpt = "default",
    task: TaskOpt = None,
    error_match: ErrorMatchOpt = None,
    reason: ReasonOpt = None,
    limit: Annotated[int | None, typer.Option(help="Redrive at most N (oldest first).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would happen.")] = False,
) -> None:
    """Enqueue dead tasks again (same task id, attempt 1); each is redriven at most once.

    Example: streamtasks dlq redrive myproj.tasks:app --task billing.charge --error-match Timeout
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from streamtasks._loading import load_app
    from streamtasks.dlq import DeadLetterQueue

    try:
        dlq = DeadLetterQueue(load_app(app), queue)
        with Progress(
            TextColumn("redriving"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            job = bar.add_task("redrive", total=None)
            report = dlq.redrive(
                task=task,
                error_match=error_match,
                reason=reason,
                limit=limit,
                dry_run=dry_run,
                progress=lambda done, total: bar.update(job, completed=done, total=total),
            )
    except StreamtasksError as exc:
        _fail(exc)
    for o in report.outcomes:
        if o.kind != "already-done":
            typer.echo(f"  {o.kind:13} {o.ref:>8} {o.task_id or '-'} {o.detail}".rstrip())
    typer.echo(report.summary())
    if report.failed:
        raise typer.Exit(1)


@dlq_cli.command("purge")
def dlq_purge(
    app: AppArg,
    queue: QueueOpt = "default",
    task: TaskOpt = None,
    error_match: ErrorMatchOpt = None,
    reason: ReasonOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Hide dead letters from list and redrive (records stay in Kafka; `list --all` shows them).

    Example: streamtasks dlq purge myproj.tasks:app --reason undecodable --yes
    """
    import sys

    from streamtasks._loading import load_app
    from streamtasks.dlq import DeadLetterQueue

    try:
        dlq = DeadLetterQueue(load_app(app), queue)
        letters = dlq.select(task=task, error_match=error_match, reason=reason)
        if not letters:
            typer.echo("nothing to purge")
            return
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError(
                    f"purging {len(letters)} dead letters needs confirmation: run it in a "
                    "terminal or pass --yes"
                )
            typer.confirm(f"Purge {len(letters)} dead letters from {dlq.topic}?", abort=True)
        purged = dlq.purge_letters(letters)
    except StreamtasksError as exc:
        _fail(exc)
    typer.echo(f"purged {purged} dead letters from {dlq.topic}")


def _jsonable(value: Any) -> Any:
    import dataclasses
    import enum
    from datetime import date, datetime

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def main() -> None:
    cli()


if __name__ == "__main__":
    main()

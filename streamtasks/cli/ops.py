"""``streamtasks replay | status | offsets reset``: operating a running app (thin layer over
:mod:`streamtasks.ops.replay`, :mod:`streamtasks.ops.status` and :mod:`streamtasks.ops.offsets`)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from streamtasks.cli.common import AppArg, fail, jsonable, require_broker
from streamtasks.errors import ConfigError, StreamtasksError

if TYPE_CHECKING:
    from streamtasks.ops.replay import Replay, ReplayPlan, ReplaySummary

__all__ = ["offsets_cli", "register"]

offsets_cli = typer.Typer(
    help="The consumer group's committed offsets (the Kafka way to re-run or skip tasks).",
    no_args_is_help=True,
)

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="The queue (task topic) to use.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def register(cli: typer.Typer) -> None:
    """Add the operations commands to the root command line."""
    cli.command("replay")(replay)
    cli.command("status")(status)
    cli.add_typer(offsets_cli, name="offsets")


def replay(
    app: AppArg,
    queue: QueueOpt = "default",
    start: Annotated[
        str | None,
        typer.Option("--from", help="Start, included: ISO-8601 (UTC if no offset) or -2h, -30m."),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="End, excluded (capped at now): ISO-8601 or -1h, now."),
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option("--task", help="Only this task (repeat for more).")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only events with this key.")] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="Only task ids whose latest status is one of, e.g. FAILURE,DEAD."
        ),
    ] = None,
    new_ids: Annotated[
        bool, typer.Option("--new-ids", help="Fresh task ids (st-replay-of names the original).")
    ] = False,
    rate: Annotated[
        float | None, typer.Option("--rate", help="Enqueue at most N events per second.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be replayed; enqueue nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    resume: Annotated[
        str | None,
        typer.Option("--resume", help="Resume (or re-run) this replay id; never enqueues twice."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-enqueue the task events of a queue stamped in [--from, --to).

    Replayed events keep their task ids (AsyncResult and `streamtasks result` show the new
    outcome), start at attempt 1 and carry a replay id, so workers run them even where an id
    already has a final result. Progress is kept in the {ns}.replays topic: an interrupted
    replay is resumed with --resume ID and enqueues nothing twice; a new replay of the same
    range runs the tasks again. Events enqueued by a replay are never selected again.

    Example: streamtasks replay myproj.tasks:app --queue emails --from -2h --to -1h --dry-run
    Example: streamtasks replay myproj.tasks:app --queue emails --from 2026-12-01T09:00Z
    --to 2026-12-01T10:00Z --status FAILURE,DEAD --yes
    Example: streamtasks replay myproj.tasks:app --resume rp-20261201T101500-3fa2c1 --yes
    """
    from rich.console import Console

    from streamtasks._loading import load_app
    from streamtasks.ops.replay import Replay

    console = Console(stderr=True)
    try:
        the_app = load_app(app)
        require_broker(the_app)  # one line and exit 1, not a stall in the first read
        if resume is not None:
            if start or end or task or key or status or new_ids:
                raise ConfigError(
                    "--resume runs the recorded replay as it was defined: drop --from, --to, "
                    "--task, --key, --status and --new-ids"
                )
            job = Replay.load(the_app, resume)
        else:
            if start is None or end is None:
                raise ConfigError("give --from and --to (or --resume REPLAY_ID)")
            job = Replay.create(
                the_app,
                queue,
                start,
                end,
                tasks=task or (),
                key=key,
                statuses=status,
                new_ids=new_ids,
            )
        plan = job.plan()
        spec = job.spec
        if dry_run:
            _print_plan(plan, spec.replay_id, as_json)
            return
        if not yes:
            if not sys.stdin.isatty():
                raise ConfigError(
                    f"replaying {plan.selected} events needs confirmation: run it in a terminal "
                    "or pass --yes"
                )
            _print_plan(plan, spec.replay_id, False)
            typer.confirm(f"Replay {plan.selected} events of {job.topic}?", abort=True)
        console.print(f"replay id: {spec.replay_id} (resume with --resume {spec.replay_id})")
        summary = _run_with_progress(job, plan.selected, rate)
    except StreamtasksError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(jsonable(summary)))
    else:
        typer.echo(
            f"replay {summary.replay_id}: selected {summary.selected}, enqueued "
            f"{summary.enqueued}, skipped {summary.skipped} (enqueued before), "
            f"{summary.elapsed_s:.1f}s"
        )


def _run_with_progress(job: Replay, total: int, rate: float | None) -> ReplaySummary:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        tid = bar.add_task("replaying", total=total)

        def step(selected: int, _enqueued: int, _skipped: int) -> None:
            bar.update(tid, completed=selected)

        return job.run(rate=rate, on_progress=step)


def _print_plan(plan: ReplayPlan, replay_id: str, as_json: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    if as_json:
        counts = [
            {"task": t, "status": s, "count": n}
            for (t, s), n in sorted(plan.by_task_status.items())
        ]
        out = {
            "replay_id": replay_id,
            "selected": plan.selected,
            "counts": counts,
            "sample": plan.sample,
            "undecodable": plan.undecodable,
        }
        typer.echo(json.dumps(out, indent=2))
        return
    table = Table(title=f"would replay {plan.selected} events")
    for column in ("task", "status", "count"):
        table.add_column(column)
    for (t, s), n in sorted(plan.by_task_status.items()):
        table.add_row(t, s, str(n))
    console = Console()
    console.print(table)
    if plan.sample:
        sample = Table(title="sample")
        for column in ("task id", "task", "status", "partition", "offset", "timestamp"):
            sample.add_column(column, overflow="fold")
        for row in plan.sample:
            sample.add_row(*(str(v) for v in row.values()))
        console.print(sample)
    if plan.undecodable:
        console.print(f"{plan.undecodable} undecodable records in range were left out")


def status(
    app: AppArg,
    as_json: JsonOpt = False,
    watch: Annotated[
        float | None, typer.Option("--watch", help="Refresh every SECONDS until Ctrl-C.")
    ] = None,
) -> None:
    """Lag per queue and partition (messages and seconds), retry tiers, DLQ, the workers.

    lag_seconds is the age of the oldest unconsumed record (the one at the committed offset).
    Rates (tasks/s finished and failed over the last minute) and workers (id, host, pid,
    queues, in flight, last heartbeat age, online) come from the workers' heartbeats; the
    group's members are listed under group.members.

    Example: streamtasks status myproj.tasks:app
    Example: streamtasks status myproj.tasks:app --json | jq '.queues[].lag'
    Example: streamtasks status myproj.tasks:app --watch 2
    """
    from rich.console import Console

    from streamtasks._loading import load_app
    from streamtasks.ops.status import collect, render

    console = Console()
    try:
        the_app = load_app(app)
        while True:
            report = collect(the_app)
            if as_json:
                typer.echo(json.dumps(report.to_json(), indent=2))
            else:
                if watch:
                    console.clear()
                for table in render(report):
                    console.print(table)
            if not watch:
                return
            time.sleep(watch)
    except StreamtasksError as exc:
        fail(exc)
    except KeyboardInterrupt:
        return


@offsets_cli.command("reset")
def offsets_reset(
    app: AppArg,
    queue: QueueOpt = "default",
    to_datetime: Annotated[
        str | None,
        typer.Option("--to-datetime", help="The first record stamped at or after T (ISO, -2h)."),
    ] = None,
    to_earliest: Annotated[bool, typer.Option("--to-earliest", help="The first record.")] = False,
    to_latest: Annotated[bool, typer.Option("--to-latest", help="The end (skip all).")] = False,
    shift_by: Annotated[
        int | None, typer.Option("--shift-by", help="Move by N (negative: back).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the new offsets; change nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Move the workers' committed offsets of a queue's task topic (like
    kafka-consumer-groups --reset-offsets). Refused while the group has live members: stop
    the workers first. Retry tiers and the DLQ are not touched.

    Example: streamtasks offsets reset myproj.tasks:app --queue emails --to-datetime -1h --dry-run
    Example: streamtasks offsets reset myproj.tasks:app --queue emails --to-latest
    """
    from rich.console import Console
    from rich.table import Table

    from streamtasks._loading import load_app
    from streamtasks.ops.offsets import ResetTarget, reset_offsets

    try:
        target = ResetTarget.of(
            to_datetime=to_datetime, to_earliest=to_earliest, to_latest=to_latest, shift_by=shift_by
        )
        plan = reset_offsets(load_app(app), queue, target, dry_run=dry_run)
    except StreamtasksError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(jsonable(plan), indent=2))
        return
    verb = "would move" if dry_run else "moved"
    table = Table(title=f"{plan.group} on {plan.topic}: {verb}")
    for column in ("partition", "current", "new"):
        table.add_column(column, justify="right")
    for row in plan.partitions:
        current = "-" if row.current is None else str(row.current)
        table.add_row(str(row.partition), current, str(row.new))
    Console().print(table)

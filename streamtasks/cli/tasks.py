"""``streamtasks send | result | revoke | results expire``: one task and its result, and the
local result store (thin layers over ``Task.apply_async``, ``AsyncResult`` and
:mod:`streamtasks.ops.store`)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from streamtasks.cli.common import (
    AppArg,
    LegacyAppOpt,
    app_and_id,
    fail,
    jsonable,
    require_broker,
    timestamp,
)
from streamtasks.errors import BrokerError, ConfigError, DeliveryError, StreamtasksError

#: APP as the first argument of a command that also takes the old ``--app`` option
_AppPositional = Annotated[
    str, typer.Argument(metavar="APP", help="The app to load, as 'package.module:app'.")
]
#: TASK_ID as the second argument (the first, with the old ``--app`` spelling)
_TaskIdPositional = Annotated[str | None, typer.Argument(metavar="TASK_ID", help="The task id.")]

__all__ = ["result", "results_cli", "revoke", "send"]


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


def result(
    app_arg: _AppPositional,
    task_id_arg: _TaskIdPositional = None,
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


def revoke(
    app_arg: _AppPositional,
    task_id_arg: _TaskIdPositional = None,
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


results_cli = typer.Typer(help="The local result store of the results topic.", no_args_is_help=True)


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

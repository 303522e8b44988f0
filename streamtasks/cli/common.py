"""Helpers shared by the command-line modules: the app argument, errors, JSON output."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamtasks.errors import ConfigError

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = [
    "AppArg",
    "LegacyAppOpt",
    "app_and_id",
    "fail",
    "jsonable",
    "require_broker",
    "timestamp",
]

#: Seconds a command waits for the broker before saying it cannot be reached.
BROKER_CHECK_TIMEOUT = 10.0

AppArg = Annotated[str, typer.Argument(help="The app to load, as 'package.module:app'.")]
LegacyAppOpt = Annotated[
    str | None,
    typer.Option(
        "--app",
        "-A",
        envvar="STREAMTASKS_APP",
        help="Deprecated: pass the app as the first argument instead.",
    ),
]


def fail(exc: BaseException) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 1)


def app_and_id(first: str, second: str | None, legacy_app: str | None) -> tuple[str, str]:
    """``APP ID`` (preferred) or the deprecated ``ID --app APP``; returns ``(app, id)``."""
    if second is not None:
        return first, second
    if legacy_app is None:
        raise ConfigError(
            "missing the task id: use `streamtasks COMMAND APP TASK_ID` "
            "(e.g. myproj.tasks:app 3f2a...)"
        )
    typer.secho(
        "warning: --app is deprecated; pass the app first: COMMAND APP TASK_ID",
        fg=typer.colors.YELLOW,
        err=True,
    )
    return legacy_app, first


def require_broker(app: App) -> None:
    """Fail as one line (exit 1) when the app's broker does not answer, before the command
    starts work that would otherwise stall or fail with a raw client error."""
    app.check_broker(timeout=BROKER_CHECK_TIMEOUT)


def timestamp(ms: int | None, now: int | None = None) -> str:
    """Epoch milliseconds as ``2026-12-01T09:30:00Z (5m ago)`` (or ``(in 5m)``); ``-`` if
    unknown."""
    if ms is None:
        return "-"
    from datetime import UTC, datetime

    from streamtasks.ops.deadletters import format_age
    from streamtasks.wire.envelope import now_ms

    now = now_ms() if now is None else now
    iso = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
    when = f"in {format_age(now, ms)}" if ms > now else f"{format_age(ms, now)} ago"
    return f"{iso.replace('+00:00', 'Z')} ({when})"


def jsonable(value: Any) -> Any:
    import dataclasses
    import enum
    from datetime import date, datetime

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value

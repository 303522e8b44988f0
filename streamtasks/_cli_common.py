"""Helpers shared by the command-line modules: the app argument, errors, JSON output."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamtasks.errors import ConfigError

__all__ = ["AppArg", "fail", "jsonable"]

AppArg = Annotated[str, typer.Argument(help="The app to load, as 'package.module:app'.")]


def fail(exc: BaseException) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2 if isinstance(exc, ConfigError) else 1)


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

"""The ``streamtasks`` command line: a thin layer over the library (typer).

Every command is a few lines calling library code; library errors are printed as one clear
line (exit code 2 for configuration mistakes, 1 otherwise), never as a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from streamtasks.cli import dev, schedules, tasks, worker
from streamtasks.cli.common import fail
from streamtasks.cli.dashboard import dashboard
from streamtasks.cli.dlq import dlq_cli
from streamtasks.cli.events import events_command
from streamtasks.cli.ops import register as register_ops
from streamtasks.cli.schemas import schemas_cli
from streamtasks.cli.topics import topics_cli
from streamtasks.errors import ConfigError
from streamtasks.logs import LogFormat, configure_logging

__all__ = ["main"]

cli = typer.Typer(
    name="streamtasks",
    help="Kafka-native distributed task processing.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Every command, in the order --help lists them (commands, then command groups); each lives
# in the module of its group: cli/worker.py, cli/tasks.py, cli/schedules.py, cli/dev.py, ...
cli.add_typer(topics_cli, name="topics")
cli.add_typer(dlq_cli, name="dlq")
register_ops(cli)  # replay, status, offsets reset
cli.command()(dev.broker)
cli.command()(worker.worker)
cli.command()(schedules.scheduler)
cli.command()(schedules.schedules)
cli.command()(tasks.send)
cli.command()(tasks.result)
cli.command()(tasks.revoke)
cli.command()(dev.demo)
cli.command("dashboard")(dashboard)
cli.command("events")(events_command)
cli.add_typer(schemas_cli, name="schemas")
cli.add_typer(tasks.results_cli, name="results")


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

"""``streamtasks broker`` and ``streamtasks demo``: a development broker, and the demo on it
(thin layers over :mod:`streamtasks.dev` and :mod:`streamtasks.demo`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from streamtasks.cli.common import fail
from streamtasks.errors import ConfigError, StreamtasksError

__all__ = ["broker", "demo"]


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

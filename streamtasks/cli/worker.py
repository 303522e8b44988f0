"""``streamtasks worker``: run an app's tasks as a member of its consumer group (a thin layer
over :class:`streamtasks.worker.Worker` and, with ``--processes``, its supervisor)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import structlog
import typer

from streamtasks.cli.common import AppArg, fail
from streamtasks.errors import ConfigError, StreamtasksError

if TYPE_CHECKING:
    from streamtasks.worker.stopsignals import StopRelay

__all__ = ["worker"]


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
    events: Annotated[
        bool,
        typer.Option(
            "--events", "-E", help="Write per-task lifecycle events to {ns}.events (like -E)."
        ),
    ] = False,
    heartbeat_interval: Annotated[
        float, typer.Option(help="Seconds between the worker's heartbeats on {ns}.events.")
    ] = 5.0,
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve Prometheus metrics on http://HOST:PORT/metrics."),
    ] = None,
    metrics_lag_interval: Annotated[
        float, typer.Option(help="Seconds between consumer-lag samples for the metrics.")
    ] = 5.0,
    gc_tuning: Annotated[
        bool,
        typer.Option(
            help="Freeze the start-up heap and collect young objects less often while running."
        ),
    ] = True,
    metrics_record: Annotated[
        bool, typer.Option(hidden=True, help="Keep metrics for a supervisor that serves them.")
    ] = False,
) -> None:
    """Run tasks of APP as a member of its consumer group.

    SIGTERM drains in-flight tasks and commits; a second signal stops at once.

    Example: streamtasks worker myproj.tasks:app --concurrency 16 --queues default,emails
    Example: streamtasks worker myproj.tasks:app --processes 4   (one per core, supervised)
    Example: streamtasks worker myproj.tasks:app --burst   (drain the queues, commit, exit 0)
    Example: streamtasks worker myproj.tasks:app --events   (then: streamtasks events APP -f)
    Example: streamtasks worker myproj.tasks:app --processes 2 --metrics-port 9100
    """
    from streamtasks.worker.stopsignals import StopRelay, drain_then_force, on_stop_signals

    # first thing: a SIGTERM while the app loads or the worker is built is a clean stop (a
    # supervisor or an orchestrator may stop a process that is still starting), not a kill
    relay = StopRelay()
    restore = on_stop_signals(drain_then_force(relay))
    try:
        from streamtasks._loading import load_app
        from streamtasks.worker import Worker

        the_app = load_app(app)  # fail fast in the supervisor too
        if processes < 1:
            raise ConfigError(f"--processes must be >= 1, got {processes}")
        if burst and processes > 1:
            raise ConfigError("--burst runs one process: start several `worker --burst` instead")
        if processes > 1:
            from streamtasks.worker.supervisor import Supervisor, child_args

            supervisor = Supervisor(child_args(sys.argv[1:]), processes, metrics_port=metrics_port)
            if _stopped_while_starting(relay):
                return
            # a signal from here until run() has its own handlers stops the supervisor too
            relay.connect(supervisor.stop)
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
            events=True if events else None,
            heartbeat_interval=heartbeat_interval,
            metrics_port=metrics_port,
            metrics=metrics_record,
            metrics_lag_interval=metrics_lag_interval,
            gc_tuning=gc_tuning,
        )
        if _stopped_while_starting(relay):
            return
        relay.connect(w.stop)  # from here a signal drains (or forces) this worker
        w.run(burst=burst, install_signal_handlers=False)
    except StreamtasksError as exc:
        fail(exc)
    finally:
        if restore is not None:
            restore()


def _stopped_while_starting(relay: StopRelay) -> bool:
    """A stop signal came before anything ran: nothing to drain, so exit 0 now."""
    if relay.pending is None:
        return False
    structlog.get_logger("streamtasks.worker").info("stopped before it started")
    return True

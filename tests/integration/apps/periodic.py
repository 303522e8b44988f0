"""A periodic app for the scheduler tests (tests.integration.apps.periodic:app)."""

from __future__ import annotations

from datetime import timedelta

from streamtasks import App, current_task


def build(namespace: str | None = None, bootstrap_servers: str | None = None) -> App:
    app = App(
        "ptest",
        namespace=namespace,
        bootstrap_servers=bootstrap_servers,
        partitions=3,
        retry_tiers=(1, 2),
        consumer_config={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "fetch.wait.max.ms": 10,
        },
    )

    @app.periodic(every=timedelta(seconds=1), name="tick")
    def tick() -> str:
        return current_task().id

    @app.task(name="beat")
    def beat(policy: str) -> str:
        return policy

    for policy in ("skip", "once", "all"):
        app.schedule(
            beat,
            every=timedelta(seconds=1),
            name=f"beat-{policy}",
            args=(policy,),
            misfire=policy,
            grace=timedelta(seconds=1),  # type: ignore[arg-type]
        )
    return app


app = build()

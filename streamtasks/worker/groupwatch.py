"""Saying so when a consumer-group member gets no partitions (worker, scheduler).

A member that joined a group but was given nothing is silent otherwise: tasks stay PENDING and
the log shows only "worker started". :class:`AssignmentWatch` runs beside the poll loop (its
own daemon thread, so the admin request never blocks polling): once the member had no
partitions for :data:`FIRST_WARNING` seconds it logs a warning naming the group, the group's
state and its members (from the admin API), and repeats that every :data:`REPEAT_WARNING`
seconds while it lasts.

Invariants: the watch only reads (describes the group), never joins or commits; it stops
with its member; a failing admin request is reported in the warning, never raised.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from streamtasks.config import Settings
from streamtasks.errors import BrokerError
from streamtasks.kafka import clients

__all__ = ["FIRST_WARNING", "REPEAT_WARNING", "AssignmentWatch", "describe_group"]

log = structlog.get_logger("streamtasks.group")

#: Seconds without partitions before the first warning.
FIRST_WARNING = 30.0
#: Seconds between repeated warnings while the member still has no partitions.
REPEAT_WARNING = 120.0


def describe_group(settings: Settings, group_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """``{"state": ..., "members": [{"client_id", "host", "partitions"}, ...]}`` of a group,
    or ``{"state": "unknown", "error": ...}`` when the admin API cannot tell. (The request runs
    on a client of its own that is gone before this returns: see ``clients._on_own_client``.)"""
    admin = clients.make_admin(settings.admin())
    try:
        info = clients.describe_group(admin, group_id, timeout=timeout)
    except BrokerError as exc:
        return {"state": "unknown", "error": str(exc)}
    except Exception as exc:  # e.g. a timeout of the future: the watch must not die
        return {"state": "unknown", "error": repr(exc)}
    members = [
        {"client_id": m.client_id, "host": m.host, "partitions": len(m.partitions)}
        for m in info.members
    ]
    return {"state": info.state, "members": members}


class AssignmentWatch:
    """Warns while ``has_partitions()`` is false (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        group_id: str,
        has_partitions: Callable[[], bool],
        *,
        what: str,
        standby_ok: bool = False,
        first: float = FIRST_WARNING,
        repeat: float = REPEAT_WARNING,
    ) -> None:
        self._settings = settings
        self._group_id = group_id
        self._has_partitions = has_partitions
        self._what = what
        self._standby_ok = standby_ok  # a scheduler standby: fine while another member leads
        self._first, self._repeat = first, repeat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{what}-group-watch", daemon=True)

    def start(self) -> AssignmentWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        since = time.monotonic()
        next_warning = since + self._first
        while not self._stop.wait(1.0):
            now = time.monotonic()
            if self._has_partitions():
                since, next_warning = now, now + self._first
                continue
            if now < next_warning:
                continue
            next_warning = now + self._repeat
            group = describe_group(self._settings, self._group_id)
            members = group.get("members", [])
            if self._standby_ok and any(m["partitions"] for m in members):
                continue  # another member holds the partition: standing by is correct
            log.warning(
                f"{self._what} has had no partitions for {now - since:.0f}s",
                group=self._group_id,
                group_state=group["state"],
                members=[
                    f"{m['client_id']}@{m['host']} ({m['partitions']} partitions)" for m in members
                ],
                error=group.get("error"),
                hint="tasks stay PENDING until a member of the group gets the partitions; "
                "check that the group is not stuck rebalancing and that the topics exist",
            )

"""What a replay is and what it selects: the pure half of :mod:`streamtasks.ops.replay`.

Times, the replay's spec (queue, ``[start, end)``, filters) and its selection rule, the event
and headers a replayed record becomes, and the fold of ``{ns}.replays`` records into a replay's
progress. No I/O here; everything is unit-tested (``tests/unit/test_replay.py``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamtasks.errors import ConfigError
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import Envelope, TaskStatus
from streamtasks.wire.topics import REPLAY_HEADER, REPLAY_OF_HEADER, REPLAY_ORIGIN_HEADER, Headers

__all__ = [
    "SKEW_MS",
    "Progress",
    "ReplayCandidate",
    "ReplayPlan",
    "ReplaySpec",
    "ReplaySummary",
    "fold_progress",
    "iso",
    "new_replay_id",
    "parse_statuses",
    "parse_time",
    "replay_headers",
    "replayed_envelope",
]

#: How far out of order record timestamps may be along a partition (CreateTime from several
#: producers): reading starts at the first record stamped this long before the range's start
#: and stops at the first one stamped this long after its end. Selection itself is by each
#: record's own timestamp, so the margin only costs reading.
SKEW_MS = 60_000
_RELATIVE = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DROPPED_HEADERS = {
    hdr.ID,
    hdr.ATTEMPT,
    hdr.NOT_BEFORE,
    hdr.FIRST_FAILURE,
    REPLAY_HEADER,
    REPLAY_ORIGIN_HEADER,
    REPLAY_OF_HEADER,
}


# -- pure: times, specs, selection ---------------------------------------------------------------
def parse_time(text: str, now: int) -> int:
    """Epoch ms of ``text``: ``now``, a relative time (``-2h``, ``-30m``, ``+10s``, ``-1.5d``,
    units ms/s/m/h/d/w), an ISO-8601 date/time (no offset means UTC), or epoch ms digits."""
    value = text.strip()
    if value.lower() == "now":
        return now
    rel = _RELATIVE.match(value)
    if rel is not None:
        sign = -1 if rel.group(1) == "-" else 1
        return now + sign * int(float(rel.group(2)) * _UNIT_MS[rel.group(3)])
    if value.isdigit() and len(value) >= 11:
        return int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}: use ISO-8601 (2026-12-01T09:00:00Z, no offset means "
            "UTC), a relative time like -2h, -30m, -90s, -1d, 'now', or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def parse_statuses(text: str | None) -> frozenset[TaskStatus] | None:
    """``"FAILURE,DEAD"`` → those statuses; None/empty → no status filter."""
    if not text:
        return None
    out = set()
    for part in text.split(","):
        name = part.strip().upper()
        if not name:
            continue
        try:
            out.add(TaskStatus(name))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise ConfigError(f"unknown status {part.strip()!r}; use one of {known}") from None
    return frozenset(out) or None


def new_replay_id(now: int) -> str:
    stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"rp-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """What one replay selects and how it re-enqueues. Times are epoch ms, ``[start, end)``."""

    replay_id: str
    queue: str
    start_ms: int
    end_ms: int
    created_ms: int
    tasks: frozenset[str] | None = None
    key: bytes | None = None
    statuses: frozenset[TaskStatus] | None = None
    new_ids: bool = False

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ConfigError(
                f"empty time range: --to ({iso(self.end_ms)}) must be after --from "
                f"({iso(self.start_ms)}) (--to is capped at the time the replay is created)"
            )

    def in_range(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms

    def selects(self, ts_ms: int, task: str, key: bytes | None, status: TaskStatus) -> bool:
        """Is an event of ``task`` with ``key``, stamped ``ts_ms``, whose id is in ``status``,
        part of this replay?"""
        return (
            self.in_range(ts_ms)
            and (self.tasks is None or task in self.tasks)
            and (self.key is None or key == self.key)
            and (self.statuses is None or status in self.statuses)
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "replay_id": self.replay_id,
                "queue": self.queue,
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "created_ms": self.created_ms,
                "tasks": None if self.tasks is None else sorted(self.tasks),
                "key": None if self.key is None else self.key.decode("latin-1"),
                "statuses": None if self.statuses is None else sorted(self.statuses),
                "new_ids": self.new_ids,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ReplaySpec:
        d = json.loads(raw)
        return cls(
            replay_id=d["replay_id"],
            queue=d["queue"],
            start_ms=int(d["start_ms"]),
            end_ms=int(d["end_ms"]),
            created_ms=int(d["created_ms"]),
            tasks=None if d["tasks"] is None else frozenset(d["tasks"]),
            key=None if d["key"] is None else str(d["key"]).encode("latin-1"),
            statuses=None if d["statuses"] is None else frozenset(map(TaskStatus, d["statuses"])),
            new_ids=bool(d["new_ids"]),
        )


def replayed_envelope(env: Envelope, new_id: str | None) -> Envelope:
    """The event to enqueue for ``env``: a first attempt, due now, never expiring."""
    return dataclasses.replace(
        env,
        id=new_id or env.id,
        attempt=1,
        eta=None,
        expires=None,
        last_error=None,
    )


def replay_headers(
    original: Headers | None, env: Envelope, replay_id: str, origin: str, replay_of: str | None
) -> Headers:
    """The original record's own headers (user headers kept) with the task headers of ``env``
    and the replay markers."""
    kept: Headers = [(k, v) for k, v in original or () if k not in _DROPPED_HEADERS]
    kept = [(k, v) for k, v in kept if k != hdr.TASK]
    out: Headers = [
        *hdr.task_headers(env),
        *kept,
        (REPLAY_HEADER, replay_id.encode()),
        (REPLAY_ORIGIN_HEADER, origin.encode()),
    ]
    if replay_of is not None:
        out.append((REPLAY_OF_HEADER, replay_of.encode()))
    return out


@dataclass(frozen=True, slots=True)
class Progress:
    """A replay's recorded state: its spec and, per partition, the next offset to look at."""

    spec: ReplaySpec | None
    positions: dict[int, int] = field(default_factory=dict)
    finished: bool = False


def fold_progress(replay_id: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> Progress:
    """Fold ``(key, value)`` records of the replays topic (in order) into ``replay_id``'s
    progress: the latest value per key wins, a tombstone deletes it."""
    latest: dict[str, bytes | None] = {}
    for key, value in records:
        if key is None:
            continue
        name = key.decode(errors="replace")
        if name == replay_id or name.startswith(replay_id + "/"):
            latest[name] = value
    raw = latest.get(replay_id)
    spec = None if raw is None else ReplaySpec.from_json(raw)
    positions: dict[int, int] = {}
    finished = False
    for name, value in latest.items():
        if value is None or name == replay_id:
            continue
        suffix = name[len(replay_id) + 1 :]
        if suffix == "done":
            finished = True
        elif suffix.isdigit():
            positions[int(suffix)] = int(json.loads(value)["next"])
    return Progress(spec, positions, finished)


@dataclass(frozen=True, slots=True)
class ReplayCandidate:
    """A selected event, as read."""

    partition: int
    offset: int
    ts_ms: int
    key: bytes | None
    env: Envelope
    status: TaskStatus
    headers: Headers | None

    @property
    def origin(self) -> tuple[int, int]:
        return (self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay selects (a dry run): counts per (task, status) and a sample."""

    selected: int
    by_task_status: dict[tuple[str, str], int]
    sample: list[dict[str, Any]]
    undecodable: int


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    replay_id: str
    selected: int
    enqueued: int
    skipped: int  # selected, but enqueued before by an earlier run of this replay id
    elapsed_s: float


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")

"""Retry policy and the one pure decision "what happens to this failure".

Invariants: :func:`decide` does no I/O and depends only on its arguments (randomness comes in
as an ``rng``), so it is unit-tested exhaustively; the worker only carries out its verdict.

Outcomes of a failed attempt ``n`` (1-based):

* ``retry``  — re-produce to the retry tier whose delay covers the backoff (attempt ``n+1``);
* ``dead``   — dead-letter topic; result DEAD (attempts exhausted, or ``Reject``);
* ``fail``   — final FAILURE result, no DLQ (the task has no retries, or the error is one the
  policy says not to retry: a definite answer, not work to redrive).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from streamtasks.errors import ConfigError
from streamtasks.signals import Reject, Retry

__all__ = [
    "DEFAULT_TIERS",
    "EXPLICIT_RETRY",
    "NO_RETRY",
    "Decision",
    "RetryPolicy",
    "decide",
    "tier_for",
]

#: Delays (seconds) of the retry tiers ``{ns}.tasks.{queue}.retry.{n}``, n = 1, 2, ...
DEFAULT_TIERS: tuple[float, ...] = (5.0, 30.0, 300.0, 1800.0)


@dataclass(frozen=True)
class RetryPolicy:
    """``RetryPolicy(max_attempts=5, backoff=2.0, factor=2.0, max_delay=600, jitter=0.2)``.

    Attempt ``n`` failing waits ``min(max_delay, backoff * factor**(n-1))`` seconds, scaled by
    a random factor in ``[1 - jitter, 1]`` (so retries of many tasks do not stampede).
    Exceptions in ``dont_retry_on``, or not in ``retry_on``, are not retried.
    """

    max_attempts: int = 3
    backoff: float = 1.0
    factor: float = 2.0
    max_delay: float = 600.0
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    dont_retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff < 0 or self.max_delay < 0:
            raise ConfigError("RetryPolicy.backoff and max_delay must be >= 0")
        if self.factor < 1:
            raise ConfigError(f"RetryPolicy.factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"RetryPolicy.jitter must be within [0, 1], got {self.jitter}")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Backoff after failed attempt ``attempt`` (1-based), jitter applied."""
        base = min(self.max_delay, self.backoff * self.factor ** (attempt - 1))
        return base * (1.0 - self.jitter * rng.random())

    def retries(self, exc: BaseException) -> bool:
        return isinstance(exc, self.retry_on) and not isinstance(exc, self.dont_retry_on)


NO_RETRY = RetryPolicy(max_attempts=1)
#: Used for ``raise Retry()`` in a task without a retry policy (Celery's default: 3 runs).
EXPLICIT_RETRY = RetryPolicy(max_attempts=3)


@dataclass(frozen=True)
class Decision:
    action: Literal["retry", "dead", "fail"]
    reason: str
    delay: float = 0.0
    tier: int | None = None  # 1-based retry tier, for "retry"


def tier_for(delay: float, tiers: Sequence[float]) -> int:
    """The 1-based tier to hold a record ``delay`` seconds: the first whose delay covers it,
    else the last (a record is held until its own due time in any tier)."""
    if not tiers:
        raise ConfigError("at least one retry tier is needed")
    for index, tier_delay in enumerate(tiers, start=1):
        if delay <= tier_delay:
            return index
    return len(tiers)


def decide(
    policy: RetryPolicy,
    exc: BaseException,
    attempt: int,
    tiers: Sequence[float],
    rng: random.Random,
) -> Decision:
    """What happens after attempt ``attempt`` raised ``exc``."""
    if isinstance(exc, Reject):
        return Decision("dead", "rejected")
    explicit = isinstance(exc, Retry)
    if explicit and policy.max_attempts == 1:
        policy = EXPLICIT_RETRY  # an explicit Retry works without a policy, like Celery's
    if policy.max_attempts == 1:
        return Decision("fail", "no-retries")
    if not explicit and not policy.retries(exc):
        return Decision("fail", "not-retryable")
    if attempt >= policy.max_attempts:
        return Decision("dead", "max-attempts")
    countdown = exc.countdown if isinstance(exc, Retry) else None
    delay = countdown if countdown is not None else policy.delay(attempt, rng)
    return Decision("retry", "retry", delay=delay, tier=tier_for(delay, tiers))

"""Control signals a task raises to steer its own outcome. They are not errors.

* ``raise Retry(countdown=10)`` — run again later (counts as an attempt; the retry policy's
  ``max_attempts`` still applies, after which the task is dead-lettered);
* ``raise Reject("bad payload")`` — give up now: straight to the dead-letter topic.
"""

from __future__ import annotations

__all__ = ["Reject", "Retry", "SoftTimeLimitExceeded", "TaskSignal"]


class TaskSignal(Exception):
    """Base of the control signals (deliberately not a StreamtasksError)."""


class Retry(TaskSignal):
    """Ask for another attempt, after ``countdown`` seconds (default: the policy's backoff)."""

    def __init__(self, countdown: float | None = None, *, reason: str = "retry requested") -> None:
        if countdown is not None and countdown < 0:
            raise ValueError("countdown must be >= 0")
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason


class Reject(TaskSignal):
    """Refuse the task for good: it goes to the dead-letter topic without retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task that ran past its ``soft_time_limit`` (a failure: the retry
    policy applies)."""

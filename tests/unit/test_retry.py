"""The pure failure decision: retry (which tier, how long), dead-letter, or fail."""

from __future__ import annotations

import random

import pytest

from streamtasks.errors import ConfigError
from streamtasks.retry import NO_RETRY, RetryPolicy, decide, tier_for
from streamtasks.signals import Reject, Retry

TIERS = (5.0, 30.0, 300.0, 1800.0)


def rng() -> random.Random:
    return random.Random(3)


@pytest.mark.parametrize(
    ("delay", "tier"), [(0.0, 1), (4.9, 1), (5.0, 1), (5.1, 2), (30.0, 2), (299, 3), (10_000, 4)]
)
def test_the_tier_is_the_first_whose_delay_covers_the_backoff(delay: float, tier: int) -> None:
    assert tier_for(delay, TIERS) == tier


def test_backoff_is_exponential_capped_and_jittered_downwards_only() -> None:
    policy = RetryPolicy(max_attempts=10, backoff=1.0, factor=2.0, max_delay=10.0, jitter=0.2)
    r = rng()
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)]:
        for _ in range(50):
            d = policy.delay(attempt, r)
            assert base * 0.8 <= d <= base


def test_no_jitter_gives_exact_delays() -> None:
    policy = RetryPolicy(backoff=2.0, factor=3.0, jitter=0.0)
    assert [policy.delay(n, rng()) for n in (1, 2, 3)] == [2.0, 6.0, 18.0]


def test_a_failure_with_attempts_left_is_retried_in_the_covering_tier() -> None:
    policy = RetryPolicy(max_attempts=3, backoff=10.0, jitter=0.0)
    d = decide(policy, RuntimeError("x"), 1, TIERS, rng())
    assert (d.action, d.delay, d.tier) == ("retry", 10.0, 2)
    d = decide(policy, RuntimeError("x"), 2, TIERS, rng())
    assert (d.action, d.delay, d.tier) == ("retry", 20.0, 2)


def test_the_last_attempt_goes_to_the_dlq() -> None:
    d = decide(RetryPolicy(max_attempts=3), RuntimeError("x"), 3, TIERS, rng())
    assert (d.action, d.reason) == ("dead", "max-attempts")


def test_without_a_policy_a_failure_is_final_and_not_dead_lettered() -> None:
    d = decide(NO_RETRY, RuntimeError("x"), 1, TIERS, rng())
    assert (d.action, d.reason) == ("fail", "no-retries")


def test_errors_the_policy_does_not_retry_fail_at_once() -> None:
    policy = RetryPolicy(max_attempts=5, retry_on=(ConnectionError,), dont_retry_on=(KeyError,))
    assert decide(policy, ValueError(), 1, TIERS, rng()).action == "fail"
    assert decide(policy, ConnectionError(), 1, TIERS, rng()).action == "retry"
    broad = RetryPolicy(max_attempts=5, dont_retry_on=(KeyError,))
    d = decide(broad, KeyError("k"), 1, TIERS, rng())
    assert (d.action, d.reason) == ("fail", "not-retryable")


def test_reject_dead_letters_at_once_even_with_attempts_left() -> None:
    d = decide(RetryPolicy(max_attempts=5), Reject("bad payload"), 1, TIERS, rng())
    assert (d.action, d.reason) == ("dead", "rejected")


def test_explicit_retry_uses_its_countdown_and_works_without_a_policy() -> None:
    d = decide(NO_RETRY, Retry(countdown=42), 1, TIERS, rng())
    assert (d.action, d.delay, d.tier) == ("retry", 42.0, 3)
    # ... but not forever: Celery's default of 3 runs applies
    assert decide(NO_RETRY, Retry(), 3, TIERS, rng()).action == "dead"
    # and it retries even an error type the policy would not
    policy = RetryPolicy(max_attempts=4, retry_on=(ConnectionError,))
    assert decide(policy, Retry(countdown=1), 2, TIERS, rng()).action == "retry"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff": -1}, {"factor": 0.5}, {"jitter": 1.5}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_tiers_config_is_validated() -> None:
    from streamtasks.config import Settings

    assert Settings.resolve("a", environ={"STREAMTASKS_RETRY_TIERS": "1, 2,10"}).retry_tiers == (
        1.0,
        2.0,
        10.0,
    )
    for bad in ("", "0,1", "5,1", "a,b"):
        with pytest.raises(ConfigError, match="retry_tiers"):
            Settings.resolve("a", retry_tiers=bad.split(",") if bad else [], environ={})

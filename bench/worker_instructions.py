"""The worker's own per-task cost as a count of machine instructions (valgrind), not time.

    python bench/worker_instructions.py [--n 3000] [--concurrency 8] [--no-gc-tuning] [--raw]

Timings on this machine move by ±15 % within minutes, more than most single changes to the
worker's per-task path save. An instruction count does not depend on the machine's speed:
this script runs ``bench/worker_path.py`` (a real Worker on in-process fake clients, no
broker) under ``valgrind --tool=callgrind`` for N and 2N tasks, and the same two runs with
``--setup-only`` (the app and the envelopes made, no worker run), and reports

    instructions a task = ((full 2N - full N) - (setup 2N - setup N)) / N

so the interpreter's start, the imports, the warm-up and the envelopes' making cancel out.
Thread scheduling under valgrind still varies a little from run to run (a poll loop that
finds nothing to do one more time); ``--repeats`` runs the four and reports each estimate.
``--raw`` counts the reference instead (``worker_path.py --raw``: ``raw_worker.py --avro``,
run.py's (a'w) worker, on the same fakes), so the two counts give the (b')/(a'w) ratio of the
Python paths without the machine's noise.
Needs ``valgrind`` on PATH; each estimate takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def instructions(
    n: int, *, setup_only: bool, concurrency: int, gc_tuning: bool, raw: bool = False
) -> int:
    """Instructions of one ``worker_path.py --repeats 1`` process under callgrind."""
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        str(BENCH_DIR / "worker_path.py"),
        "--n",
        str(n),
        "--repeats",
        "1",
        "--concurrency",
        str(concurrency),
        "--gc-tuning" if gc_tuning else "--no-gc-tuning",
    ]
    if setup_only:
        cmd.append("--setup-only")
    if raw:
        cmd.append("--raw")
    env = dict(os.environ, PYTHONHASHSEED="0", STREAMTASKS_LOG_LEVEL="WARNING")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return int(found.group(1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--gc-tuning", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--raw", action="store_true", help="the raw + Avro reference worker")
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("needs valgrind on PATH")
    n, kw = args.n, {"concurrency": args.concurrency, "gc_tuning": args.gc_tuning, "raw": args.raw}
    estimates = []
    for _ in range(args.repeats):
        full = [instructions(k, setup_only=False, **kw) for k in (n, 2 * n)]
        setup = [instructions(k, setup_only=True, **kw) for k in (n, 2 * n)]
        per_task = ((full[1] - full[0]) - (setup[1] - setup[0])) / n
        setup_per_task = (setup[1] - setup[0]) / n
        estimates.append(per_task)
        print(
            f"  full {full[0]:,} / {full[1]:,}, setup {setup[0]:,} / {setup[1]:,}: "
            f"{per_task:,.0f} instructions a task (the envelopes' making: "
            f"{setup_per_task:,.0f} a task)",
            flush=True,
        )
    print(
        f"{'raw + Avro reference' if args.raw else 'worker'} path under callgrind, N={n}, "
        f"concurrency {args.concurrency}, gc tuning "
        f"{'on' if args.gc_tuning else 'off'}: {statistics.median(estimates):,.0f} "
        f"instructions a task (median of {len(estimates)}; "
        f"{min(estimates):,.0f}-{max(estimates):,.0f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

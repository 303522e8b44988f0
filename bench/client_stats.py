#!/usr/bin/env python
"""Summarise the librdkafka statistics that ``BENCH_CLIENT_STATS_DIR`` collected.

    BENCH_CLIENT_STATS_DIR=/tmp/st python bench/run.py --parts workers --broker kafka
    python bench/client_stats.py /tmp/st

One line per client (``{pid}-{name}.json``, the last report it wrote, so the counters cover
its whole life): its type and ``client.id``, the broker threads' wake-ups, the requests sent
(by kind), and the round-trip time. A broker thread that sleeps until it has work wakes
roughly once per request or fetch; hundreds of thousands of wake-ups for a few hundred
requests are a busy wait (see bench/README.md, "issue 18, eighth session").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    for path in sorted(Path(sys.argv[1]).glob("*.json")):
        report = json.loads(path.read_text())
        brokers = [b for b in report.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        wakeups = sum(b.get("wakeups", 0) for b in brokers)
        sent = sum(b.get("tx", 0) for b in brokers)
        kinds: dict[str, int] = {}
        for b in brokers:
            for kind, count in b.get("req", {}).items():
                if count:
                    kinds[kind] = kinds.get(kind, 0) + count
        top = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:3])
        rtts = [b["rtt"]["avg"] / 1000 for b in brokers if b.get("rtt", {}).get("cnt")]
        rtt = f"{max(rtts):.1f} ms" if rtts else "-"
        per = wakeups / sent if sent else 0.0
        print(
            f"{path.stem:48s} {report.get('type', '?'):8s} {report.get('client_id', ''):30s} "
            f"wake-ups {wakeups:>9,} requests {sent:>6,} ({per:,.0f} wake-ups a request; "
            f"{top}) rtt {rtt}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

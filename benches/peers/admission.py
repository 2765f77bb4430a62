"""Comparison 1: pure admission overhead of the peers' throttlers.

N requests of weight 1, one after another, against a limit set so high that
nothing ever waits. Prints one JSON object per throttler.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time

# Far above any N here, so no admission ever waits.
UNBLOCKING_LIMIT = 10**12


async def ccxt_run(n):
    from ccxt.async_support.base.throttler import Throttler

    # refillRate is tokens per ms; a full bucket of 10^12 tokens never runs dry.
    throttler = Throttler({"refillRate": 1e9, "capacity": UNBLOCKING_LIMIT, "tokens": UNBLOCKING_LIMIT})
    start = time.perf_counter()
    for _ in range(n):
        await throttler(1)
    return time.perf_counter() - start


async def hummingbot_run(n):
    from hummingbot.core.api_throttler.async_throttler import AsyncThrottler
    from hummingbot.core.api_throttler.data_types import RateLimit

    throttler = AsyncThrottler([RateLimit("REQUEST_WEIGHT", UNBLOCKING_LIMIT, 60.0)])
    start = time.perf_counter()
    for _ in range(n):
        async with throttler.execute_task("REQUEST_WEIGHT"):
            pass
    return time.perf_counter() - start


RUNS = {"ccxt": ccxt_run, "hummingbot": hummingbot_run}


def measure(peer, n, repeats):
    """Median of `repeats` fresh runs, each on a fresh event loop and throttler."""
    seconds = statistics.median(asyncio.run(RUNS[peer](n)) for _ in range(repeats))
    return {
        "peer": peer,
        "n": n,
        "repeats": repeats,
        "seconds": seconds,
        "ns_per_admission": seconds / n * 1e9,
        "admissions_per_s": n / seconds,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("peer", choices=sorted(RUNS))
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for n in args.n:
        print(json.dumps(measure(args.peer, n, args.repeats)), flush=True)


if __name__ == "__main__":
    sys.exit(main())

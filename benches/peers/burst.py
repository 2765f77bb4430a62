"""Comparison 2: what each throttler admits under a burst, counted as the exchange counts.

A burst of 3x the limit (e.g. 300 requests of weight 1 against 100 per 1 s)
arrives at once, half-way through an aligned window. Admission times are taken
from the wall clock the moment each request is let through. Prints one JSON
object per throttler configuration.
"""

import argparse
import asyncio
import json
import math
import sys
import time

from windows import window_stats


def ccxt_leaky(limit, window_s, capacity):
    """CCXT's default limiter: one token per (window / limit), bucket of `capacity`."""
    from ccxt.async_support.base.throttler import Throttler

    # An idle bucket is full; the exchange-level default capacity is 1.
    throttler = Throttler({"refillRate": limit / (window_s * 1000.0), "capacity": capacity, "tokens": capacity})
    return lambda: throttler(1)


def ccxt_rolling(limit, window_s):
    """CCXT's optional rolling-window limiter (`rateLimiterAlgorithm = 'rollingWindow'`)."""
    from ccxt.async_support.base.throttler import Throttler

    throttler = Throttler(
        {"algorithm": "rollingWindow", "rateLimit": window_s * 1000.0 / limit, "windowSize": window_s * 1000.0}
    )
    return lambda: throttler(1)


def hummingbot_default(limit, window_s):
    """Hummingbot's AsyncThrottler with its defaults (0.1 s retry, 5 % safety margin)."""
    from hummingbot.core.api_throttler.async_request_context_base import AsyncRequestContextBase
    from hummingbot.core.api_throttler.async_throttler import AsyncThrottler
    from hummingbot.core.api_throttler.data_types import RateLimit

    # The "limit almost reached" notice goes to the full trading application, which
    # is not running here; silencing it changes no throttling decision.
    AsyncRequestContextBase._last_max_cap_warning_ts = math.inf
    throttler = AsyncThrottler([RateLimit("REQUEST_WEIGHT", limit, window_s)])

    async def acquire():
        async with throttler.execute_task("REQUEST_WEIGHT"):
            pass

    return acquire


CONFIGS = {
    "ccxt-leaky-default": ("ccxt", "leaky bucket, capacity 1 (CCXT default)", lambda l, w: ccxt_leaky(l, w, 1)),
    "ccxt-leaky-burst": ("ccxt", "leaky bucket, capacity = limit (not the default)", lambda l, w: ccxt_leaky(l, w, l)),
    "ccxt-rolling": ("ccxt", "rolling window (CCXT option)", ccxt_rolling),
    "hummingbot": ("hummingbot", "AsyncThrottler, defaults", hummingbot_default),
}


async def sleep_until_phase(window_s, phase):
    """Sleeps until the wall clock is `phase` of the way into an aligned window."""
    now = time.time()
    target = (math.floor(now / window_s) + phase) * window_s
    if target <= now + 0.05:
        target += window_s
    await asyncio.sleep(target - now)


async def run_burst(acquire, demand, window_s, phase, timeout_s):
    admitted = []

    async def one():
        await acquire()
        admitted.append(time.time())

    await sleep_until_phase(window_s, phase)
    started = time.time()
    tasks = [asyncio.ensure_future(one()) for _ in range(demand)]
    done, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    failures = [task.exception() for task in done if task.exception() is not None]
    if failures:
        raise RuntimeError(f"{len(failures)} admissions failed; first: {failures[0]!r}")
    return started, admitted


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", choices=sorted(CONFIGS))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--demand", type=int, default=300)
    parser.add_argument("--phase", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=8.0)
    args = parser.parse_args()
    peer, label, build = CONFIGS[args.config]

    async def go():
        # Built inside the loop: the throttlers bind to the running loop.
        return await run_burst(build(args.limit, args.window_s), args.demand, args.window_s, args.phase, args.timeout_s)

    started, admitted = asyncio.run(go())
    stats = window_stats(admitted, args.window_s, args.limit)
    stats["all_admitted_after_s"] = round(max(admitted) - started, 3) if len(admitted) == args.demand else None
    print(json.dumps({"config": args.config, "peer": peer, "label": label, "limit": args.limit,
                      "window_s": args.window_s, "demand": args.demand, "phase": args.phase, **stats}))


if __name__ == "__main__":
    sys.exit(main())

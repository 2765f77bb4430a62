"""Comparison 3: Binance bookTicker frames -> json.loads -> on_book(q) in a plain asyncio loop.

Frames are built before timing starts. Two shapes of loop are measured:
`inline` parses and calls the callback straight from one coroutine (no hand-off
at all, the cheapest a Python host can be); `queue` hands each raw frame from a
reader task to a dispatcher task through an asyncio.Queue, as a socket reader
feeding a strategy would. Prints one JSON object per mode.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time

from frames import book_ticker_frames


class Strategy:
    """The callback under test: reads the quote's fields, as a strategy would."""

    def __init__(self):
        self.events = 0
        self.mid = 0.0

    def on_book(self, q):
        self.events += 1
        self.mid = (float(q["b"]) + float(q["a"])) * 0.5


async def inline(frames, strategy):
    loads, on_book = json.loads, strategy.on_book
    for frame in frames:
        on_book(loads(frame))


async def queued(frames, strategy):
    queue = asyncio.Queue(maxsize=1024)

    async def reader():
        for frame in frames:
            await queue.put(frame)
        await queue.put(None)

    async def dispatcher():
        loads, on_book = json.loads, strategy.on_book
        while (frame := await queue.get()) is not None:
            on_book(loads(frame))

    await asyncio.gather(reader(), dispatcher())


MODES = {"inline": inline, "queue": queued}


def measure(mode, frames, repeats):
    rates = []
    for _ in range(repeats):
        strategy = Strategy()
        start = time.perf_counter()
        asyncio.run(MODES[mode](frames, strategy))
        seconds = time.perf_counter() - start
        if strategy.events != len(frames):
            raise RuntimeError(f"{mode}: {strategy.events} of {len(frames)} events reached on_book")
        rates.append(len(frames) / seconds)
    events_per_s = statistics.median(rates)
    return {"peer": "python-asyncio", "mode": mode, "events": len(frames), "repeats": repeats,
            "events_per_s": events_per_s, "ns_per_event": 1e9 / events_per_s}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=sorted(MODES), nargs="+", default=sorted(MODES))
    args = parser.parse_args()
    frames = book_ticker_frames(args.events)
    for mode in args.mode:
        print(json.dumps(measure(mode, frames, args.repeats)), flush=True)


if __name__ == "__main__":
    sys.exit(main())

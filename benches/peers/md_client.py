"""The Python side of `benches/market_data_e2e.rs`: an asyncio loop that reads a combined bookTicker
stream with `websockets`, parses every frame with `json`, and counts them.

Usage: python md_client.py WS_URL FRAMES. Prints one line: frames, seconds, frames per second."""
import asyncio
import json
import sys
import time

import websockets


async def main(url: str, frames: int) -> None:
    count = 0
    bids = 0.0
    async with websockets.connect(url, max_size=None, max_queue=None, compression=None) as ws:
        first = None
        async for message in ws:
            frame = json.loads(message)
            bids += float(frame["data"]["b"])
            if first is None:
                first = time.perf_counter()
            count += 1
            if count >= frames:
                break
        elapsed = time.perf_counter() - first
    print(f"{count} frames parsed in {elapsed:.2f} s: {count / elapsed:.0f}/s")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))

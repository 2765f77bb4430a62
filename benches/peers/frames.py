"""Binance bookTicker frames with varying numbers, identical on both sides of the comparison."""


def book_ticker_frames(n, symbols=("BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT")):
    """`n` frames shaped like `<symbol>@bookTicker` events, built before timing starts."""
    frames = []
    for i in range(n):
        bid = 25.0 + (i % 1000) * 0.0001
        frames.append(
            '{"u":%d,"s":"%s","b":"%.8f","B":"%.8f","a":"%.8f","A":"%.8f"}'
            % (400900217 + i, symbols[i % len(symbols)], bid, 31.21 + (i % 97), bid + 0.0133, 40.66 + (i % 89))
        )
    return frames

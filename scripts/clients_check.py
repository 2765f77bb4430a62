"""Drives a running `runner sim` with two widely used Binance clients: CCXT (REST and its
streaming "pro" classes) and Binance's official `binance-sdk-spot` (REST, market streams and the
WebSocket API with `session.logon`). Every step prints OK or FAIL with the error; the script never
stops at the first failure, so one run shows everything a user would trip over.

Usage (see scripts/clients_check.sh, which sets all of this up):
    python clients_check.py PORT API_KEY API_SECRET ED25519_KEY_NAME ED25519_PRIVATE_PEM
"""

import asyncio
import sys
import time
import traceback

RESULTS = []


def record(name, ok, detail=""):
    RESULTS.append((name, ok))
    status = "OK  " if ok else "FAIL"
    print(f"{status} {name}{': ' + detail if detail else ''}", flush=True)


def step(name, fn):
    try:
        detail = fn()
        record(name, True, str(detail)[:160] if detail is not None else "")
        return detail
    except Exception as e:  # each failure is reported and the run goes on
        record(name, False, f"{type(e).__name__}: {str(e)[:300]}")
        return None


async def astep(name, coro_fn):
    try:
        detail = await asyncio.wait_for(coro_fn(), timeout=20)
        record(name, True, str(detail)[:160] if detail is not None else "")
        return detail
    except Exception as e:
        record(name, False, f"{type(e).__name__}: {str(e)[:300]}")
        return None


def ccxt_client(port, key, secret, pro=False):
    import ccxt
    import ccxt.pro

    cls = ccxt.pro.binance if pro else ccxt.binance
    ex = cls({
        "apiKey": key,
        "secret": secret,
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False, "fetchMargins": False,
                    "defaultType": "spot"},
    })
    rest, ws, ws_api = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws-api/v3"

    def rewrite(value):
        if isinstance(value, dict):
            return {k: rewrite(v) for k, v in value.items()}
        if isinstance(value, str):
            return (value.replace("https://api.binance.com", rest)
                    .replace("wss://stream.binance.com:9443", ws)
                    .replace("wss://ws-api.binance.com:443/ws-api/v3", ws_api))
        return value

    ex.urls["api"] = rewrite(ex.urls["api"])
    return ex


def run_ccxt_rest(port, key, secret):
    ex = ccxt_client(port, key, secret)
    step("ccxt load_markets", lambda: len(ex.load_markets()))
    step("ccxt fetch_ticker", lambda: ex.fetch_ticker("BTC/USDT")["last"])
    step("ccxt fetch_order_book(limit=50)", lambda: len(ex.fetch_order_book("BTC/USDT", 50)["bids"]))
    step("ccxt fetch_ohlcv 1m", lambda: len(ex.fetch_ohlcv("BTC/USDT", "1m", limit=10)))
    step("ccxt fetch_ohlcv 1w", lambda: len(ex.fetch_ohlcv("BTC/USDT", "1w", limit=2)))
    step("ccxt fetch_trades", lambda: len(ex.fetch_trades("BTC/USDT", limit=5)))
    step("ccxt fetch_balance", lambda: ex.fetch_balance()["USDT"])
    book = ex.fetch_order_book("ETH/USDT", 5)
    bid = book["bids"][0][0]
    low = round(bid * 0.97, 2)
    order = step("ccxt create_order limit", lambda: ex.create_order("ETH/USDT", "limit", "buy", 0.1, low))
    if order:
        step("ccxt fetch_order", lambda: ex.fetch_order(order["id"], "ETH/USDT")["status"])
        step("ccxt fetch_open_orders", lambda: len(ex.fetch_open_orders("ETH/USDT")))
        step("ccxt cancel_order", lambda: ex.cancel_order(order["id"], "ETH/USDT")["status"])
    step("ccxt create_order market", lambda: ex.create_order("ETH/USDT", "market", "buy", 0.05)["status"])
    last = ex.fetch_ticker("ETH/USDT")["last"]
    stop = step("ccxt stop-loss-limit (params stopPrice)", lambda: ex.create_order(
        "ETH/USDT", "STOP_LOSS_LIMIT", "sell", 0.05, round(last * 0.94, 2),
        {"stopPrice": round(last * 0.95, 2), "timeInForce": "GTC"}))
    if stop:
        step("ccxt cancel stop order", lambda: ex.cancel_order(stop["id"], "ETH/USDT")["status"])
    step("ccxt fetch_my_trades", lambda: len(ex.fetch_my_trades("ETH/USDT")))


async def run_ccxt_pro(port, key, secret):
    ex = ccxt_client(port, key, secret, pro=True)
    try:
        await astep("ccxt.pro load_markets", lambda: ex.load_markets())
        await astep("ccxt.pro watch_ticker", lambda: ex.watch_ticker("BTC/USDT"))
        await astep("ccxt.pro watch_trades", lambda: ex.watch_trades("BTC/USDT"))
        await astep("ccxt.pro watch_order_book", lambda: ex.watch_order_book("BTC/USDT"))
        await astep("ccxt.pro watch_ohlcv", lambda: ex.watch_ohlcv("BTC/USDT", "1m"))
    finally:
        await ex.close()


def run_sdk_rest(port, key, secret):
    from binance_sdk_spot.spot import ConfigurationRestAPI, Spot

    client = Spot(config_rest_api=ConfigurationRestAPI(api_key=key, api_secret=secret,
                                                       base_path=f"http://127.0.0.1:{port}"))
    api = client.rest_api
    step("sdk rest exchange_info", lambda: len(api.exchange_info(symbol="BTCUSDT").data().symbols))
    step("sdk rest depth", lambda: len(api.depth(symbol="BTCUSDT", limit=10).data().bids))
    step("sdk rest klines 1s", lambda: len(api.klines(symbol="BTCUSDT", interval="1s", limit=5).data()))
    step("sdk rest ticker (rolling window)", lambda: api.ticker(symbol="BTCUSDT", window_size="1h").data())
    step("sdk rest account", lambda: len(api.get_account().data().balances))
    bid = float(api.depth(symbol="ETHUSDT", limit=5).data().bids[0][0])
    price = round(bid * 0.97, 2)
    placed = step("sdk rest new_order limit", lambda: api.new_order(
        symbol="ETHUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=1.0, price=price).data())
    if placed:
        step("sdk rest order_amend_keep_priority", lambda: api.order_amend_keep_priority(
            symbol="ETHUSDT", order_id=placed.order_id, new_qty=0.5).data().amended_order)
        step("sdk rest order_cancel_replace", lambda: api.order_cancel_replace(
            symbol="ETHUSDT", side="BUY", type="LIMIT", cancel_replace_mode="STOP_ON_FAILURE",
            time_in_force="GTC", quantity=0.3, price=round(price - 1, 2), cancel_order_id=placed.order_id).data())
    step("sdk rest iceberg order", lambda: api.new_order(
        symbol="ETHUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=1.0, price=price,
        iceberg_qty=0.2).data())
    oco = step("sdk rest order_list_oco", lambda: api.order_list_oco(
        symbol="ETHUSDT", side="SELL", quantity=0.1, above_type="LIMIT_MAKER", below_type="STOP_LOSS",
        above_price=round(bid * 1.05, 2), below_stop_price=round(bid * 0.9, 2)).data())
    if oco:
        step("sdk rest get_order_list", lambda: api.get_order_list(order_list_id=oco.order_list_id).data())
        step("sdk rest open_order_list", lambda: len(api.open_order_list().data()))
        step("sdk rest delete_order_list", lambda: api.delete_order_list(
            symbol="ETHUSDT", order_list_id=oco.order_list_id).data())
    step("sdk rest order_list_oto", lambda: api.order_list_oto(
        symbol="ETHUSDT", working_type="LIMIT", working_side="BUY", working_price=price,
        working_quantity=0.1, working_time_in_force="GTC", pending_type="LIMIT_MAKER", pending_side="SELL",
        pending_price=round(bid * 1.05, 2), pending_quantity=0.1).data())
    step("sdk rest order_list_otoco", lambda: api.order_list_otoco(
        symbol="ETHUSDT", working_type="LIMIT", working_side="BUY", working_price=price,
        working_quantity=0.1, working_time_in_force="GTC", pending_side="SELL", pending_quantity=0.1,
        pending_above_type="LIMIT_MAKER", pending_above_price=round(bid * 1.05, 2),
        pending_below_type="STOP_LOSS", pending_below_stop_price=round(bid * 0.9, 2)).data())
    step("sdk rest all_order_list", lambda: len(api.all_order_list().data()))


async def run_sdk_ws(port, ed_name, ed_pem):
    from binance_sdk_spot.spot import ConfigurationWebSocketAPI, ConfigurationWebSocketStreams, Spot

    client = Spot(
        config_ws_api=ConfigurationWebSocketAPI(api_key=ed_name, private_key=ed_pem,
                                                stream_url=f"ws://127.0.0.1:{port}/ws-api/v3"),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=f"ws://127.0.0.1:{port}"),
    )
    streams = await client.websocket_streams.create_connection()
    got = asyncio.get_running_loop().create_future()
    try:
        async def trade_stream():
            stream = await streams.trade(symbol="btcusdt")
            stream.on("message", lambda m: got.done() or got.set_result(m))
            return await got
        await astep("sdk streams trade", trade_stream)
    finally:
        await streams.close_connection(close_session=True)

    conn = await client.websocket_api.create_connection()
    try:
        await astep("sdk ws-api session_logon", lambda: _data(conn.session_logon()))
        await astep("sdk ws-api session_status", lambda: _data(conn.session_status()))
        events = []

        async def subscribe():
            res = await conn.user_data_stream_subscribe()
            res.stream.on("message", lambda m: events.append(m))
            return res.response.data()
        await astep("sdk ws-api user_data_stream_subscribe", subscribe)
        import json
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v3/ticker/price?symbol=ETHUSDT") as r:
            price = round(float(json.load(r)["price"]) * 0.97, 2)
        placed = await astep("sdk ws-api order_place", lambda: _data(conn.order_place(
            symbol="ETHUSDT", side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.2, price=price)))

        async def wait_events():
            for _ in range(100):
                if events:
                    return f"{len(events)} event(s), first: {str(events[0])[:100]}"
                await asyncio.sleep(0.05)
            raise TimeoutError("no user-data event")
        await astep("sdk ws-api user data events", wait_events)
        if placed is not None:
            await astep("sdk ws-api order_amend_keep_priority", lambda: _data(conn.order_amend_keep_priority(
                symbol="ETHUSDT", order_id=placed.result.order_id, new_qty=0.1)))
        await astep("sdk ws-api session_logout", lambda: _data(conn.session_logout()))
    finally:
        await conn.close_connection()


async def _data(awaitable):
    return (await awaitable).data()


def main():
    port, key, secret, ed_name, ed_pem_path = sys.argv[1:6]
    ed_pem = open(ed_pem_path).read()
    started = time.time()
    for section, fn in [
        ("CCXT REST", lambda: run_ccxt_rest(port, key, secret)),
        ("CCXT pro (streams)", lambda: asyncio.run(run_ccxt_pro(port, key, secret))),
        ("binance-sdk-spot REST", lambda: run_sdk_rest(port, key, secret)),
        ("binance-sdk-spot streams and WebSocket API", lambda: asyncio.run(run_sdk_ws(port, ed_name, ed_pem))),
    ]:
        print(f"\n## {section}", flush=True)
        try:
            fn()
        except Exception:
            record(f"{section} (setup)", False, traceback.format_exc(limit=2).replace("\n", " | "))
    passed = sum(1 for _, ok in RESULTS if ok)
    print(f"\n{passed} of {len(RESULTS)} steps OK in {time.time() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()

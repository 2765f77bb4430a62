//! The symbol table (from `exchangeInfo`) and local order validation: prices and
//! quantities converted exactly onto the symbol's grid and checked against its
//! filters before anything is sent or any weight is spent.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::exchange::grid::{self, GridError};
use crate::exchange::types::{
    ApiError, ErrorCode, OrderField, OrderFields, OrderKind, OrderRequest, OrderType, SelfTradePrevention, Side,
    SymbolInfo, TimeInForce,
};

use crate::exchange::binance::wire::{Filter, SymbolEntry};

/// Converts one `exchangeInfo` symbol into the venue-neutral trading rules.
pub fn symbol_info(entry: &SymbolEntry) -> SymbolInfo {
    let mut info = SymbolInfo {
        symbol: entry.symbol.clone(),
        base: entry.base_asset.clone(),
        quote: entry.quote_asset.clone(),
        status: entry.status.clone(),
        tick_size: Decimal::ZERO,
        min_price: Decimal::ZERO,
        max_price: Decimal::ZERO,
        step_size: Decimal::ZERO,
        min_qty: Decimal::ZERO,
        max_qty: Decimal::ZERO,
        market_step_size: Decimal::ZERO,
        market_min_qty: Decimal::ZERO,
        market_max_qty: Decimal::ZERO,
        min_notional: Decimal::ZERO,
        apply_min_to_market: false,
        max_notional: Decimal::ZERO,
        apply_max_to_market: false,
        max_num_orders: None,
        base_precision: entry.base_asset_precision,
        quote_precision: entry.quote_asset_precision,
    };
    for filter in &entry.filters {
        match filter {
            Filter::Price {
                min_price,
                max_price,
                tick_size,
            } => {
                (info.min_price, info.max_price, info.tick_size) = (*min_price, *max_price, *tick_size);
            }
            Filter::LotSize {
                min_qty,
                max_qty,
                step_size,
            } => {
                (info.min_qty, info.max_qty, info.step_size) = (*min_qty, *max_qty, *step_size);
            }
            Filter::MarketLotSize {
                min_qty,
                max_qty,
                step_size,
            } => {
                (info.market_min_qty, info.market_max_qty, info.market_step_size) = (*min_qty, *max_qty, *step_size);
            }
            Filter::Notional {
                min_notional,
                apply_min_to_market,
                max_notional,
                apply_max_to_market,
                ..
            } => {
                info.min_notional = *min_notional;
                info.apply_min_to_market = *apply_min_to_market;
                info.max_notional = *max_notional;
                info.apply_max_to_market = *apply_max_to_market;
            }
            Filter::MinNotional {
                min_notional,
                apply_to_market,
                ..
            } => {
                info.min_notional = *min_notional;
                info.apply_min_to_market = *apply_to_market;
            }
            Filter::MaxNumOrders { max_num_orders } => info.max_num_orders = Some(*max_num_orders),
            Filter::Other => {}
        }
    }
    info
}

/// Symbol rules by name, plus interned names for the stream hot path.
#[derive(Debug, Default)]
pub struct SymbolTable {
    infos: HashMap<String, SymbolInfo>,
    interned: HashMap<Box<str>, Arc<str>>,
}

impl SymbolTable {
    pub fn from_entries(entries: &[SymbolEntry]) -> Self {
        let mut table = SymbolTable::default();
        for entry in entries {
            table.infos.insert(entry.symbol.clone(), symbol_info(entry));
            table
                .interned
                .insert(entry.symbol.as_str().into(), Arc::from(entry.symbol.as_str()));
        }
        table
    }

    pub fn get(&self, symbol: &str) -> Option<&SymbolInfo> {
        self.infos.get(symbol)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.infos.keys().cloned().collect();
        names.sort();
        names
    }

    /// The shared name of a listed symbol (no allocation).
    pub fn intern(&self, symbol: &str) -> Option<Arc<str>> {
        self.interned.get(symbol).cloned()
    }
}

/// An order that passed every local check: its kind exactly on the symbol's grid, in the decimals
/// that go on the wire. Only [`validate`] builds one (and the journal's replay of one it built).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "OrderForm", into = "OrderForm")]
pub struct ValidOrder {
    symbol: String,
    side: Side,
    kind: OrderKind<Decimal>,
    stp: Option<SelfTradePrevention>,
}

impl ValidOrder {
    pub fn symbol(&self) -> &str {
        &self.symbol
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn kind(&self) -> &OrderKind<Decimal> {
        &self.kind
    }

    pub fn stp(&self) -> Option<SelfTradePrevention> {
        self.stp
    }

    /// The order's value in its quote asset when its kind says it: the quote amount of a MARKET
    /// order, else price × quantity (a stop order without a limit price trades at about its stop
    /// price); `None` for a MARKET order by base quantity and a trailing stop without a stop price.
    pub fn notional(&self) -> Option<Decimal> {
        let fields = self.kind.fields();
        if let Some(quote) = fields.quote_quantity {
            return Some(quote);
        }
        Some(fields.price.or(fields.stop_price)? * fields.quantity?)
    }
}

/// How the order journal writes a [`ValidOrder`]: flat fields, decimals as strings. It reads the
/// journals of earlier versions too, whose `new` records held `price` and `quantity` as JSON
/// numbers, with 0 for "none" (a MARKET order's price, a MARKET-by-quote order's quantity).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderForm {
    symbol: String,
    side: Side,
    order_type: OrderType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tif: Option<TimeInForce>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact")]
    price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact")]
    quantity: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact")]
    quote_quantity: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact")]
    stop_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trailing_delta: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stp: Option<SelfTradePrevention>,
}

impl From<ValidOrder> for OrderForm {
    fn from(order: ValidOrder) -> OrderForm {
        let fields = order.kind.fields();
        OrderForm {
            symbol: order.symbol,
            side: order.side,
            order_type: order.kind.order_type(),
            tif: fields.tif,
            price: fields.price,
            quantity: fields.quantity,
            quote_quantity: fields.quote_quantity,
            stop_price: fields.stop_price,
            trailing_delta: fields.trailing_delta,
            stp: order.stp,
        }
    }
}

impl TryFrom<OrderForm> for ValidOrder {
    type Error = String;
    fn try_from(form: OrderForm) -> Result<ValidOrder, String> {
        let priced = matches!(
            form.order_type,
            OrderType::Limit | OrderType::LimitMaker | OrderType::StopLossLimit | OrderType::TakeProfitLimit
        );
        // An earlier version's "no price": 0.
        let price = form.price.filter(|p| priced || !p.is_zero());
        let fields = OrderFields {
            price,
            quantity: form.quantity,
            quote_quantity: form.quote_quantity,
            tif: form.tif,
            stop_price: form.stop_price,
            trailing_delta: form.trailing_delta,
        };
        Ok(ValidOrder {
            kind: OrderKind::from_fields(form.order_type, fields)?,
            symbol: form.symbol,
            side: form.side,
            stp: form.stp,
        })
    }
}

/// An optional decimal written as a string, read from a string or (earlier journals) a number.
mod exact {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => serializer.serialize_str(&d.to_string()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Decimal>, D::Error> {
        struct Exact;
        impl<'de> Visitor<'de> for Exact {
            type Value = Option<Decimal>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a decimal as a string or a number")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(Exact)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Decimal::from_str(s).map(Some).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // The shortest text that reads back as `v`: what the strategy wrote, on its grid.
                Decimal::from_str(&v.to_string()).map(Some).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(Decimal::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(Decimal::from(v)))
            }
        }
        deserializer.deserialize_any(Exact)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, message)
}

fn grid_error(error: GridError) -> ApiError {
    invalid(error.to_string())
}

/// Checks `request` against `info`'s filters and puts its numbers exactly on the grid.
/// `reference_price` (e.g. the latest mid) lets MARKET orders be checked against NOTIONAL.
pub fn validate(
    info: &SymbolInfo,
    request: &OrderRequest,
    reference_price: Option<Decimal>,
) -> Result<ValidOrder, ApiError> {
    if info.status != "TRADING" {
        return Err(invalid(format!(
            "{} is not trading (status {})",
            info.symbol, info.status
        )));
    }
    let market = request.kind.order_type() == OrderType::Market;
    // MARKET orders must satisfy MARKET_LOT_SIZE as well as LOT_SIZE (zero fields disable a rule).
    let (step, step_filter) = if market && !info.market_step_size.is_zero() {
        (info.market_step_size, "MARKET_LOT_SIZE")
    } else {
        (info.step_size, "LOT_SIZE")
    };
    let kind = request.kind.try_map(|field, value| match field {
        OrderField::Quantity => {
            let q = grid::snap(step_filter, "quantity", value, step).map_err(grid_error)?;
            grid::check_range("LOT_SIZE", "quantity", q, info.min_qty, info.max_qty).map_err(grid_error)?;
            if market {
                grid::check_range(
                    "MARKET_LOT_SIZE",
                    "quantity",
                    q,
                    info.market_min_qty,
                    info.market_max_qty,
                )
                .map_err(grid_error)?;
            }
            Ok(q)
        }
        OrderField::QuoteQuantity => {
            let step = Decimal::new(1, info.quote_precision.min(28));
            grid::snap("quote precision", "quote_quantity", value, step).map_err(grid_error)
        }
        OrderField::Price | OrderField::StopPrice => {
            let what = if field == OrderField::Price {
                "price"
            } else {
                "stop_price"
            };
            let p = grid::snap("PRICE_FILTER", what, value, info.tick_size).map_err(grid_error)?;
            grid::check_range("PRICE_FILTER", what, p, info.min_price, info.max_price).map_err(grid_error)?;
            Ok(p)
        }
    })?;
    let order = ValidOrder {
        symbol: info.symbol.clone(),
        side: request.side,
        kind,
        stp: request.stp,
    };
    let notional = order
        .notional()
        .or_else(|| Some(reference_price? * order.kind.quantity()?));
    if let Some(value) = notional {
        let min = if !market || info.apply_min_to_market {
            info.min_notional
        } else {
            Decimal::ZERO
        };
        let max = if !market || info.apply_max_to_market {
            info.max_notional
        } else {
            Decimal::ZERO
        };
        grid::check_range("NOTIONAL", "notional (price × quantity)", value, min, max).map_err(grid_error)?;
    }
    Ok(order)
}

/// The quantity an open order of `order_type` whose quantity is `current` may be amended to (Binance's
/// amend keep-priority): exactly on the lot grid and below `current`, as an amendment can only lower it.
pub fn validate_amend(
    info: &SymbolInfo,
    order_type: OrderType,
    current: f64,
    quantity: f64,
) -> Result<Decimal, ApiError> {
    if order_type == OrderType::Market {
        return Err(invalid("a MARKET order cannot be amended"));
    }
    let q = grid::snap("LOT_SIZE", "quantity", quantity, info.step_size).map_err(grid_error)?;
    // The current quantity came from the grid, so it snaps back exactly.
    let current = grid::snap("LOT_SIZE", "quantity", current, info.step_size).map_err(grid_error)?;
    if q >= current {
        return Err(invalid(format!(
            "an amendment can only lower an order's quantity: {q} is not below {current} \
             (the exchange refuses an increase: -2038 Order amend (quantity increase) is not supported.)"
        )));
    }
    grid::check_range("LOT_SIZE", "quantity", q, info.min_qty, info.max_qty).map_err(grid_error)?;
    Ok(q)
}

/// BTCUSDT with only its price and lot grids: for tests of what comes after validation.
#[cfg(test)]
pub(crate) fn grid_only_btcusdt() -> SymbolInfo {
    let entry: SymbolEntry = serde_json::from_str(
        r#"{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT",
        "quotePrecision":8,"quoteAssetPrecision":8,"filters":[
        {"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000.00","tickSize":"0.01"},
        {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"}]}"#,
    )
    .unwrap();
    symbol_info(&entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::types::{MarketAmount, StopTrigger};
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn btcusdt() -> SymbolInfo {
        let entry: SymbolEntry = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT",
            "quotePrecision":8,"quoteAssetPrecision":8,"filters":[
            {"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000.00","tickSize":"0.01"},
            {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"},
            {"filterType":"MARKET_LOT_SIZE","minQty":"0","maxQty":"100","stepSize":"0"},
            {"filterType":"NOTIONAL","minNotional":"5","applyMinToMarket":true,"maxNotional":"9000000","applyMaxToMarket":false,"avgPriceMins":5},
            {"filterType":"MAX_NUM_ORDERS","maxNumOrders":200},
            {"filterType":"ICEBERG_PARTS","limit":10}]}"#,
        )
        .unwrap();
        symbol_info(&entry)
    }

    fn limit(qty: f64, price: f64) -> OrderRequest {
        OrderRequest::limit("BTCUSDT", Side::Buy, qty, price)
    }

    #[test]
    fn filters_are_read_from_exchange_info() {
        let info = btcusdt();
        assert_eq!(
            (info.tick_size, info.step_size, info.min_notional),
            (d("0.01"), d("0.00001"), d("5"))
        );
        assert_eq!((info.market_max_qty, info.max_num_orders), (d("100"), Some(200)));
    }

    #[test]
    fn limit_orders_convert_exactly_with_gtc_default() {
        let order = validate(&btcusdt(), &limit(0.1 + 0.2, 50_000.1), None).unwrap();
        assert_eq!(order.kind().quantity().unwrap().to_string(), "0.3");
        assert_eq!(order.kind().price().unwrap().to_string(), "50000.1");
        assert_eq!(order.kind().tif(), Some(TimeInForce::Gtc));
    }

    #[test]
    fn bad_values_are_refused_naming_the_filter() {
        let info = btcusdt();
        for qty in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = validate(&info, &limit(qty, 100.0), None).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidOrder, "{qty}");
        }
        let err = validate(&info, &limit(0.001, 100.005), None).unwrap_err();
        assert!(
            err.message.contains("PRICE_FILTER") && err.message.contains("100.01"),
            "{}",
            err.message
        );
        let err = validate(&info, &limit(0.000015, 100.0), None).unwrap_err();
        assert!(err.message.contains("LOT_SIZE"), "{}", err.message);
        let err = validate(&info, &limit(0.001, 100.0), None).unwrap_err();
        assert!(err.message.contains("NOTIONAL"), "{}", err.message);
    }

    #[test]
    fn market_orders_use_market_lot_size_and_reference_price() {
        let info = btcusdt();
        let market = |amount| OrderRequest::market("BTCUSDT", Side::Buy, amount);
        let err = validate(&info, &market(MarketAmount::Base(200.0)), None).unwrap_err();
        assert!(err.message.contains("MARKET_LOT_SIZE"), "{}", err.message);
        let small = market(MarketAmount::Base(0.0001));
        assert!(validate(&info, &small, Some(d("100")))
            .unwrap_err()
            .message
            .contains("NOTIONAL"));
        let ok = validate(&info, &small, Some(d("60000"))).unwrap();
        assert_eq!((ok.kind().tif(), ok.kind().price()), (None, None));
        let by_quote = validate(&info, &market(MarketAmount::Quote(10.123456789)), None).unwrap();
        assert_eq!(
            *by_quote.kind(),
            OrderKind::Market {
                amount: MarketAmount::Quote(d("10.12345679"))
            }
        );
    }

    #[test]
    fn stop_orders_put_their_stop_price_on_the_grid() {
        let info = btcusdt();
        let request = OrderRequest::new(
            "BTCUSDT",
            Side::Sell,
            OrderKind::StopLossLimit {
                price: 99.5,
                quantity: 0.1,
                tif: TimeInForce::Gtc,
                trigger: StopTrigger {
                    stop_price: Some(100.0 + 1e-12),
                    trailing_delta: None,
                },
            },
        );
        let order = validate(&info, &request, None).unwrap();
        assert_eq!(order.kind().fields().stop_price, Some(d("100")));
        let off_grid = OrderRequest {
            kind: OrderKind::StopLoss {
                quantity: 0.1,
                trigger: StopTrigger {
                    stop_price: Some(100.005),
                    trailing_delta: None,
                },
            },
            ..request
        };
        let err = validate(&info, &off_grid, None).unwrap_err();
        assert!(err.message.contains("stop_price"), "{}", err.message);
    }

    /// A `new` record of the journal as versions before typed orders wrote it: numbers, 0 for none.
    #[test]
    fn the_journal_form_reads_earlier_float_records() {
        let old_limit: ValidOrder = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","side":"BUY","order_type":"LIMIT","tif":"GTC","price":50000.1,"quantity":0.3}"#,
        )
        .unwrap();
        assert_eq!(old_limit.kind().price(), Some(d("50000.1")));
        assert_eq!(old_limit.kind().quantity(), Some(d("0.3")));
        let market: ValidOrder = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","side":"SELL","order_type":"MARKET","price":0.0,"quantity":0.25}"#,
        )
        .unwrap();
        assert_eq!(
            *market.kind(),
            OrderKind::Market {
                amount: MarketAmount::Base(d("0.25"))
            }
        );
        // And what is written now reads back the same.
        let order = validate(&btcusdt(), &limit(0.3, 50_000.1), None).unwrap();
        let text = serde_json::to_string(&order).unwrap();
        assert!(text.contains(r#""price":"50000.1""#), "{text}");
        assert_eq!(serde_json::from_str::<ValidOrder>(&text).unwrap(), order);
    }
}

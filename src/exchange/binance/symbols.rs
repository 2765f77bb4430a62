//! The symbol table (from `exchangeInfo`) and local order validation: prices and
//! quantities converted exactly onto the symbol's grid and checked against its
//! filters before anything is sent or any weight is spent.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::exchange::grid::{self, GridError};
use crate::exchange::types::{ApiError, ErrorCode, OrderRequest, OrderType, Side, SymbolInfo, TimeInForce};

use super::wire::{Filter, SymbolEntry};

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

/// An order that passed every local check: exact decimals on the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOrder {
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: Option<TimeInForce>,
    pub quantity: Option<Decimal>,
    pub quote_quantity: Option<Decimal>,
    pub price: Option<Decimal>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidOrder, message)
}

fn grid_error(error: GridError) -> ApiError {
    invalid(error.to_string())
}

/// Checks `request` against `info`'s filters and converts it exactly.
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
    let market = request.order_type == OrderType::Market;
    let quantity = match request.quantity {
        Some(q) => {
            // MARKET orders must satisfy MARKET_LOT_SIZE as well as LOT_SIZE (zero fields disable a rule).
            let step = if market && !info.market_step_size.is_zero() {
                info.market_step_size
            } else {
                info.step_size
            };
            let filter = if market && !info.market_step_size.is_zero() {
                "MARKET_LOT_SIZE"
            } else {
                "LOT_SIZE"
            };
            let q = grid::snap(filter, "quantity", q, step).map_err(grid_error)?;
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
            Some(q)
        }
        None => None,
    };
    let quote_quantity = match (request.quote_quantity, market) {
        (Some(_), false) => return Err(invalid("quote_quantity is only allowed on MARKET orders")),
        (Some(qq), true) => {
            let step = Decimal::new(1, info.quote_precision.min(28));
            Some(grid::snap("quote precision", "quote_quantity", qq, step).map_err(grid_error)?)
        }
        (None, _) => None,
    };
    match (market, quantity.is_some(), quote_quantity.is_some()) {
        (true, true, true) => return Err(invalid("give either quantity or quote_quantity, not both")),
        (true, false, false) => return Err(invalid("a MARKET order needs quantity or quote_quantity")),
        (false, false, _) => return Err(invalid(format!("a {} order needs a quantity", request.order_type))),
        _ => {}
    }
    let price = match (market, request.price) {
        (true, Some(_)) => return Err(invalid("a MARKET order takes no price")),
        (true, None) => None,
        (false, None) => return Err(invalid(format!("a {} order needs a price", request.order_type))),
        (false, Some(p)) => {
            let p = grid::snap("PRICE_FILTER", "price", p, info.tick_size).map_err(grid_error)?;
            grid::check_range("PRICE_FILTER", "price", p, info.min_price, info.max_price).map_err(grid_error)?;
            Some(p)
        }
    };
    let notional = match (price, quantity, quote_quantity) {
        (Some(p), Some(q), _) => Some(p * q),
        (None, _, Some(qq)) => Some(qq),
        (None, Some(q), None) => reference_price.map(|p| p * q),
        _ => None,
    };
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
    let tif = match request.order_type {
        OrderType::Limit => Some(request.tif.unwrap_or(TimeInForce::Gtc)),
        OrderType::Market | OrderType::LimitMaker => {
            if request.tif.is_some() {
                return Err(invalid(format!(
                    "a {} order takes no time in force",
                    request.order_type
                )));
            }
            None
        }
    };
    Ok(ValidOrder {
        symbol: info.symbol.clone(),
        side: request.side,
        order_type: request.order_type,
        tif,
        quantity,
        quote_quantity,
        price,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(order.quantity.unwrap().to_string(), "0.3");
        assert_eq!(order.price.unwrap().to_string(), "50000.1");
        assert_eq!(order.tif, Some(TimeInForce::Gtc));
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
        let mut request = limit(200.0, 1.0);
        request.order_type = OrderType::Market;
        request.price = None;
        let err = validate(&info, &request, None).unwrap_err();
        assert!(err.message.contains("MARKET_LOT_SIZE"), "{}", err.message);
        request.quantity = Some(0.0001);
        assert!(validate(&info, &request, Some(d("100")))
            .unwrap_err()
            .message
            .contains("NOTIONAL"));
        let ok = validate(&info, &request, Some(d("60000"))).unwrap();
        assert_eq!((ok.tif, ok.price), (None, None));
        request.quote_quantity = Some(10.0);
        assert!(
            validate(&info, &request, None).is_err(),
            "both quantity and quote_quantity"
        );
    }
}

//! Exact price/quantity maths on a symbol's tick and step grid.
//!
//! Strategies hand us `f64`s; the exchange wants decimal strings on the grid.
//! A value within float noise of a grid point is snapped onto it exactly; a value
//! further away is refused (never silently moved), with the nearest valid values.

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};

use super::types::SymbolInfo;

/// Relative distance from a grid point still treated as float noise.
const NOISE: f64 = 1e-9;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GridError {
    #[error("{what} must be a finite number, got {value}")]
    NotFinite { what: &'static str, value: f64 },
    #[error("{what} must be positive, got {value}")]
    NotPositive { what: &'static str, value: f64 },
    #[error("{filter}: {what} {value} is not a multiple of {step}; nearest valid values are {below} and {above}")]
    OffGrid {
        filter: &'static str,
        what: &'static str,
        value: f64,
        step: Decimal,
        below: Decimal,
        above: Decimal,
    },
    #[error("{filter}: {what} {value} is outside [{min}, {max}]")]
    OutOfRange {
        filter: &'static str,
        what: &'static str,
        value: Decimal,
        min: Decimal,
        max: Decimal,
    },
}

/// Snaps `value` onto multiples of `step` (a zero step disables the grid rule),
/// refusing values that are off the grid beyond float noise.
pub fn snap(filter: &'static str, what: &'static str, value: f64, step: Decimal) -> Result<Decimal, GridError> {
    if !value.is_finite() {
        return Err(GridError::NotFinite { what, value });
    }
    if value <= 0.0 {
        return Err(GridError::NotPositive { what, value });
    }
    let exact = Decimal::from_f64(value).ok_or(GridError::NotFinite { what, value })?;
    if step.is_zero() {
        return Ok(exact.normalize());
    }
    let steps = (exact / step).round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    let nearest = steps * step;
    let distance = (nearest - exact).abs().to_f64().unwrap_or(f64::INFINITY);
    if distance <= value.abs() * NOISE {
        return Ok(nearest.normalize());
    }
    let below = (exact / step).floor() * step;
    Err(GridError::OffGrid {
        filter,
        what,
        value,
        step,
        below: below.normalize(),
        above: (below + step).normalize(),
    })
}

/// The nearest price on the tick grid (what `market.round_price` returns).
pub fn round_price(info: &SymbolInfo, price: f64) -> Option<f64> {
    round_to(price, info.tick_size, RoundingStrategy::MidpointNearestEven)
}

/// The largest quantity on the step grid not above `qty` (what `market.round_qty` returns):
/// rounding down never asks for more than the strategy meant or holds.
pub fn round_qty(info: &SymbolInfo, qty: f64) -> Option<f64> {
    round_to(qty, info.step_size, RoundingStrategy::ToZero)
}

fn round_to(value: f64, step: Decimal, strategy: RoundingStrategy) -> Option<f64> {
    let exact = Decimal::from_f64(value)?;
    if step.is_zero() {
        return exact.to_f64();
    }
    ((exact / step).round_dp_with_strategy(0, strategy) * step).to_f64()
}

/// Checks `value` against `[min, max]`; a zero bound disables that side.
pub fn check_range(
    filter: &'static str,
    what: &'static str,
    value: Decimal,
    min: Decimal,
    max: Decimal,
) -> Result<(), GridError> {
    let below_min = !min.is_zero() && value < min;
    let above_max = !max.is_zero() && value > max;
    if below_min || above_max {
        return Err(GridError::OutOfRange {
            filter,
            what,
            value,
            min,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn float_noise_snaps_exactly() {
        assert_eq!(
            snap("PRICE_FILTER", "price", 0.1 + 0.2, d("0.01")).unwrap().to_string(),
            "0.3"
        );
        assert_eq!(
            snap("LOT_SIZE", "quantity", 0.001, d("0.00001")).unwrap().to_string(),
            "0.001"
        );
    }

    #[test]
    fn off_grid_is_refused_with_neighbours() {
        let err = snap("PRICE_FILTER", "price", 100.005, d("0.01")).unwrap_err();
        match err {
            GridError::OffGrid { below, above, .. } => assert_eq!((below, above), (d("100"), d("100.01"))),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(matches!(
            snap("LOT_SIZE", "quantity", f64::NAN, d("0.1")),
            Err(GridError::NotFinite { .. })
        ));
        assert!(matches!(
            snap("LOT_SIZE", "quantity", -1.0, d("0.1")),
            Err(GridError::NotPositive { .. })
        ));
        assert!(check_range("LOT_SIZE", "quantity", d("5"), d("1"), d("0")).is_ok());
        assert!(check_range("LOT_SIZE", "quantity", d("0.5"), d("1"), d("0")).is_err());
    }
}

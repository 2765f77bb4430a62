//! Exact decimal helpers: grids and the exchange's 8-decimal output.

use rust_decimal::Decimal;

/// The exchange prints prices and quantities with 8 decimals ("0.10000000").
pub fn d8(value: Decimal) -> Decimal {
    let mut v = value.round_dp(8);
    v.rescale(8);
    v
}

/// Largest multiple of `step` not above `value` (a zero step leaves it unchanged).
pub fn floor_to(value: Decimal, step: Decimal) -> Decimal {
    if step.is_zero() {
        return value;
    }
    (value / step).floor() * step
}

/// Smallest multiple of `step` not below `value`.
pub fn ceil_to(value: Decimal, step: Decimal) -> Decimal {
    if step.is_zero() {
        return value;
    }
    (value / step).ceil() * step
}

pub fn is_multiple(value: Decimal, step: Decimal) -> bool {
    step.is_zero() || (value % step).is_zero()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_format() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(d8(d("0.1")).to_string(), "0.10000000");
        assert_eq!(floor_to(d("1.239"), d("0.01")), d("1.23"));
        assert_eq!(ceil_to(d("1.231"), d("0.01")), d("1.24"));
        assert!(is_multiple(d("0.003"), d("0.001")) && !is_multiple(d("0.0031"), d("0.001")));
    }
}

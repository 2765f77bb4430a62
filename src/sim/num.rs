//! Exact decimal helpers: grids and the exchange's 8-decimal output.

use rust_decimal::Decimal;

/// The exchange prints prices and quantities with 8 decimals ("0.10000000").
pub fn d8(value: Decimal) -> Decimal {
    let mut v = value.round_dp(8);
    v.rescale(8);
    v
}

/// `value` as the nearest `f64`, fast: a mantissa below 2^53 over a power of ten up to 10^22 are
/// both exact in `f64`, so one division rounds correctly (what parsing the decimal text gives),
/// without the 128-bit conversion of the general path. Replays convert every price this way.
pub fn to_f64(value: Decimal) -> f64 {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    let mantissa = value.mantissa();
    match POW10.get(value.scale() as usize) {
        Some(&pow) if mantissa.unsigned_abs() < 1 << 53 => mantissa as i64 as f64 / pow,
        _ => rust_decimal::prelude::ToPrimitive::to_f64(&value).unwrap_or(0.0),
    }
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
    fn to_f64_matches_parsing_the_decimal_text() {
        for text in [
            "0",
            "65000.01",
            "-0.00012345",
            "12345.12345678",
            "0.1",
            "0.3",
            "95000.99",
            "0.00000001",
        ] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(to_f64(d), text.parse::<f64>().unwrap(), "{text}");
        }
        // Past the fast path's exact range: the general conversion.
        let big: Decimal = "79228162514264337593543950335".parse().unwrap();
        assert!((to_f64(big) / 7.922816251426434e28 - 1.0).abs() < 1e-15);
        let fine: Decimal = "0.0000000000000000000000000001".parse().unwrap();
        assert!((to_f64(fine) / 1e-28 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn grid_and_format() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(d8(d("0.1")).to_string(), "0.10000000");
        assert_eq!(floor_to(d("1.239"), d("0.01")), d("1.23"));
        assert_eq!(ceil_to(d("1.231"), d("0.01")), d("1.24"));
        assert!(is_multiple(d("0.003"), d("0.001")) && !is_multiple(d("0.0031"), d("0.001")));
    }
}

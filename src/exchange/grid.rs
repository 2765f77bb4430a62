//! Exact price/quantity maths on a symbol's tick and step grid.
//!
//! Strategies hand us `f64`s; the exchange wants decimal strings on the grid.
//! A value within float noise of a grid point is snapped onto it exactly; a value
//! further away is refused (never silently moved), with the nearest valid values.

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};

use super::types::SymbolInfo;

/// A decimal as the nearest `f64` (what parsing its text gives), fast: a mantissa below 2^53 over a
/// power of ten up to 10^22 are both exact in `f64`, so one division rounds correctly, without the
/// 128-bit conversion of the general path (replays convert every price). rust_decimal's general
/// conversion never fails (every decimal is within `f64`'s range); were it ever to, NaN shows it
/// instead of a plausible wrong number.
pub fn to_f64(value: Decimal) -> f64 {
    exact_f64(value).unwrap_or_else(|| value.to_f64().unwrap_or(f64::NAN))
}

/// The nearest `f64` by one correctly rounded division, when the mantissa and the power of ten are
/// both exact doubles (see [`to_f64`]); `None` otherwise.
fn exact_f64(value: Decimal) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ];
    let mantissa = value.mantissa();
    match POW10.get(value.scale() as usize) {
        Some(&pow) if mantissa.unsigned_abs() < 1 << 53 => Some(mantissa as i64 as f64 / pow),
        _ => None,
    }
}

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
    match snap_clearly_on_grid(value, step) {
        Some(on_grid) => Ok(on_grid),
        None => snap_exactly(filter, what, value, step),
    }
}

/// [`snap`] for a finite positive `value`, in exact decimal arithmetic.
fn snap_exactly(filter: &'static str, what: &'static str, value: f64, step: Decimal) -> Result<Decimal, GridError> {
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

/// [`snap`]'s answer for a value that is on the grid up to float noise by a wide margin (what
/// strategies send, and every order pays for on its way out), without the decimal conversion and
/// division of the general path: the count of steps comes from `f64` division, and the grid point
/// is built exactly from it. `None` sends the value to the general path: a zero step, a count of
/// 10^8 steps or more (where half a step can be noise, and the two paths could round a halfway value
/// differently), or a distance not clearly inside the noise (or clearly outside it).
fn snap_clearly_on_grid(value: f64, step: Decimal) -> Option<Decimal> {
    const MAX_STEPS: f64 = 1e8;
    let step_f64 = exact_f64(step).filter(|s| *s > 0.0)?;
    let steps = (value / step_f64).round();
    if !(1.0..MAX_STEPS).contains(&steps) {
        return None;
    }
    // Both distances are within a few ulps of the exact ones; halving the bound leaves a margin
    // of orders of magnitude over that error.
    let distance = (steps * step_f64 - value).abs();
    if distance > value * NOISE * 0.5 {
        return None;
    }
    let nearest = Decimal::try_from_i128_with_scale(i128::from(steps as i64) * step.mantissa(), step.scale()).ok()?;
    Some(nearest.normalize())
}

/// How [`round_to_step`] picks a grid point when the value lies between two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// The largest multiple not above the value (quantities: never more than meant or held).
    Down,
    /// The smallest multiple not below the value.
    Up,
    /// The nearest multiple; a value halfway goes away from zero.
    Nearest,
}

impl Rounding {
    /// `"down"`, `"up"` or `"nearest"`, as strategies spell it.
    pub fn parse(name: &str) -> Option<Rounding> {
        match name {
            "down" => Some(Rounding::Down),
            "up" => Some(Rounding::Up),
            "nearest" => Some(Rounding::Nearest),
            _ => None,
        }
    }
}

/// How many doubles apart a value may sit from a grid point (or a midpoint) and still be taken as it:
/// the error a few float operations leave (`0.1 + 0.2`, `3 * 0.7`). Counted in doubles, not as a relative
/// distance, so it never grows with the step count and rounding down can never gain a real step.
pub const NOISE_ULPS: i64 = 4;

/// A value holding this many units of the step's last decimal (2.8e6 on a 0.00000001 grid) is returned as it is:
/// below it a double has at least 16 values per step, so at most one grid point is within noise of a value.
const MAX_UNITS: f64 = 281_474_976_710_656.0; // 2^48

/// The nearest price on the tick grid (what `market.round_price` returns).
pub fn round_price(info: &SymbolInfo, price: f64) -> Result<f64, GridError> {
    round_to_step(price, info.tick_size, Rounding::Nearest)
}

/// The largest quantity on the step grid not above `qty` (what `market.round_qty` returns):
/// rounding down never asks for more than the strategy meant or holds.
pub fn round_qty(info: &SymbolInfo, qty: f64) -> Result<f64, GridError> {
    round_to_step(qty, info.step_size, Rounding::Down)
}

/// A step given as a double (from a strategy) as the decimal it was written as: `1e-6` is `0.000001`.
pub fn step_from_f64(step: f64) -> Result<Decimal, GridError> {
    let not_usable = GridError::NotPositive {
        what: "step",
        value: step,
    };
    if !step.is_finite() || step <= 0.0 {
        return Err(not_usable);
    }
    match shortest_decimal(step) {
        Some(decimal) if decimal > Decimal::ZERO => Ok(decimal),
        _ => Err(not_usable),
    }
}

/// `value` on the grid of `step` (a zero step disables the grid), as the double nearest the exact decimal
/// multiple, so `3 * 0.1` on a 0.1 grid is exactly `0.3`. A value within [`NOISE_ULPS`] doubles of a grid
/// point is that point, and one that close to a midpoint is the midpoint, whatever `rounding` says.
pub fn round_to_step(value: f64, step: Decimal, rounding: Rounding) -> Result<f64, GridError> {
    if !value.is_finite() {
        return Err(GridError::NotFinite { what: "value", value });
    }
    if step.is_sign_negative() {
        return Err(GridError::NotPositive {
            what: "step",
            value: step.to_f64().unwrap_or(f64::NAN),
        });
    }
    let step = step.normalize();
    if step.is_zero() || value.abs() * 10f64.powi(step.scale() as i32) >= MAX_UNITS {
        return Ok(value);
    }
    let exact = shortest_decimal(value).ok_or(GridError::NotFinite { what: "value", value })?;
    let below = (exact / step).floor() * step;
    let above = below + step;
    let (below_f64, above_f64) = (nearest_f64(below), nearest_f64(above));
    for point in [below_f64, above_f64] {
        if ulps_apart(value, point) <= NOISE_ULPS {
            return Ok(point);
        }
    }
    Ok(match rounding {
        Rounding::Down => below_f64,
        Rounding::Up => above_f64,
        Rounding::Nearest => {
            let midpoint = below + step / Decimal::TWO;
            let halfway = ulps_apart(value, nearest_f64(midpoint)) <= NOISE_ULPS;
            let upper = if halfway { value > 0.0 } else { exact > midpoint };
            if upper {
                above_f64
            } else {
                below_f64
            }
        }
    })
}

/// The shortest decimal that reads back as `value` (what `tostring` shows), within `Decimal`'s range.
fn shortest_decimal(value: f64) -> Option<Decimal> {
    // `Display` for f64 writes the shortest round-trip digits and never an exponent.
    Decimal::from_str(&value.to_string()).ok()
}

/// The double nearest to `decimal` (`Decimal::to_f64` may be one double off): exact by division when it
/// can be (every price and quantity on a real grid), else by parsing its text (zero too, whose sign
/// the text keeps).
fn nearest_f64(decimal: Decimal) -> f64 {
    match exact_f64(decimal) {
        Some(nearest) if !decimal.is_zero() => nearest,
        _ => decimal.to_string().parse().unwrap_or(f64::NAN),
    }
}

/// How many doubles lie between `a` and `b` (0 when equal; -0.0 and 0.0 are equal).
fn ulps_apart(a: f64, b: f64) -> i64 {
    ordered_bits(a).abs_diff(ordered_bits(b)).try_into().unwrap_or(i64::MAX)
}

/// The bits of `x` as an integer that orders like the doubles themselves.
fn ordered_bits(x: f64) -> i64 {
    let bits = x.to_bits() as i64;
    if bits < 0 {
        i64::MIN.wrapping_sub(bits)
    } else {
        bits
    }
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

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    use proptest::prelude::{prop_oneof, Just};

    proptest::proptest! {
        /// Grid points, grid points moved by noise, by just over and under the noise bound, by
        /// half a step, and arbitrary values: the fast path never answers differently.
        #[test]
        fn the_fast_path_answers_as_the_general_path(
            steps in 1u64..300_000_000,
            scale in 0u32..10,
            step_digit in prop_oneof![Just(1i64), Just(3), Just(5), Just(25)],
            nudge in prop_oneof![
                Just(0.0), Just(1e-15), Just(-1e-15), Just(4.9e-10), Just(-5.1e-10), Just(0.99e-9),
                Just(1.01e-9), Just(-1e-9), Just(0.5), Just(-0.5), Just(0.25), -1.0f64..1.0,
            ],
        ) {
            let step = Decimal::new(step_digit, scale);
            let step_f64 = to_f64(step);
            // `nudge` is relative to the value for noise-sized ones, in steps for the others.
            let on_grid = steps as f64 * step_f64;
            let value = if nudge.abs() < 1e-6 { on_grid * (1.0 + nudge) } else { on_grid + nudge * step_f64 };
            proptest::prop_assume!(value > 0.0 && value.is_finite());
            let fast = snap("F", "w", value, step).map_err(|_| ());
            let general = snap_exactly("F", "w", value, step).map_err(|_| ());
            proptest::prop_assert_eq!(fast, general, "value {} step {}", value, step);
        }
    }

    #[test]
    fn the_fast_path_takes_what_strategies_send_and_leaves_the_rest() {
        assert_eq!(snap_clearly_on_grid(25_000.37, d("0.01")), Some(d("25000.37")));
        assert_eq!(snap_clearly_on_grid(0.001, d("0.00001")), Some(d("0.001")));
        assert_eq!(snap_clearly_on_grid(0.1 + 0.2, d("0.1")), Some(d("0.3")));
        // Off the grid, near the noise bound, a zero step, a huge count: the general path decides.
        assert_eq!(snap_clearly_on_grid(25_000.375, d("0.01")), None);
        assert_eq!(snap_clearly_on_grid(100.0 * (1.0 + 0.9e-9), d("1")), None);
        assert_eq!(snap_clearly_on_grid(3.0, Decimal::ZERO), None);
        assert_eq!(snap_clearly_on_grid(2e8, d("1")), None);
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

    #[test]
    fn the_fast_nearest_double_is_the_one_parsing_the_text_gives() {
        // Mantissas near the 2^53 edge, scales up to 10^22 and past it, both signs.
        let mut mantissas: Vec<i64> = vec![0, 1, 3, 7, 25_000, 123_456_789, (1 << 53) - 1, 1 << 53, (1 << 53) + 1];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            mantissas.push((x >> (x % 40)) as i64);
        }
        for &m in &mantissas {
            for scale in [0, 1, 2, 5, 8, 12, 16, 22, 23, 28] {
                for sign in [1, -1] {
                    let decimal = Decimal::new(sign * m, scale);
                    let by_text: f64 = decimal.to_string().parse().unwrap();
                    assert_eq!(nearest_f64(decimal).to_bits(), by_text.to_bits(), "{decimal}");
                }
            }
        }
    }

    #[test]
    fn rounding_lands_on_the_nearest_double_of_the_decimal() {
        assert_eq!(round_to_step(0.1 + 0.2, d("0.1"), Rounding::Down), Ok(0.3));
        assert_eq!(round_to_step(3.0 * 0.7, d("0.1"), Rounding::Down), Ok(2.1));
        assert_eq!(round_to_step(0.29999999, d("0.1"), Rounding::Down), Ok(0.2));
        assert_eq!(round_to_step(0.31, d("0.1"), Rounding::Up), Ok(0.4));
        assert_eq!(round_to_step(100.004, d("0.01"), Rounding::Nearest), Ok(100.0));
        assert_eq!(round_to_step(-0.35, d("0.1"), Rounding::Down), Ok(-0.4));
        assert_eq!(round_to_step(17.0, d("5"), Rounding::Down), Ok(15.0));
        assert_eq!(round_to_step(5.0, d("0"), Rounding::Down), Ok(5.0));
    }

    #[test]
    fn halfway_goes_away_from_zero() {
        assert_eq!(round_to_step(0.125, d("0.25"), Rounding::Nearest), Ok(0.25));
        assert_eq!(round_to_step(-0.125, d("0.25"), Rounding::Nearest), Ok(-0.25));
        // 100.005 is a hair below the decimal as a double; it still counts as halfway.
        assert_eq!(round_to_step(100.005, d("0.01"), Rounding::Nearest), Ok(100.01));
    }

    #[test]
    fn noise_never_gains_a_whole_step_on_large_counts() {
        // 1e12 steps of 1e-8: a relative tolerance would round 9999.99999999 up to 10000.
        assert_eq!(
            round_to_step(9999.99999999, d("0.00000001"), Rounding::Down),
            Ok(9999.99999999)
        );
        assert_eq!(
            round_to_step(333333.3333333333, d("0.00000001"), Rounding::Down),
            Ok(333333.33333333)
        );
    }

    #[test]
    fn steps_given_as_doubles_read_as_their_decimals() {
        assert_eq!(step_from_f64(0.000001), Ok(d("0.000001")));
        assert_eq!(step_from_f64(10.0), Ok(d("10")));
        assert!(step_from_f64(0.0).is_err());
        assert!(step_from_f64(f64::NAN).is_err());
        assert!(round_to_step(f64::INFINITY, d("1"), Rounding::Down).is_err());
        assert_eq!(round_to_step(1e300, d("0.01"), Rounding::Down), Ok(1e300));
    }
}

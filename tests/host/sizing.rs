//! `stdlib/sizing.lua` against the host's exact grid maths, over many generated inputs: awkward ticks and steps,
//! values a few doubles either side of grid points and midpoints, float sums like `0.1 + 0.2`.
//!
//! - In a plain Lua VM (no host), sizing's own rounding gives exactly what `grid::round_to_step` gives.
//! - In a real strategy VM, sizing's quantities pass the host's order validation (`symbols::validate`), never
//!   exceed what the caller asked for or can afford beyond float noise, and every refusal is one the exchange
//!   would make too.

use std::path::PathBuf;
use std::str::FromStr;

use mlua::{Function, Lua, Table, Value};
use runner::exchange::binance::orders::symbols;
use runner::exchange::grid::{self, Rounding};
use runner::exchange::{OrderRequest, Side, SymbolInfo};
use rust_decimal::Decimal;

/// Steps and ticks as exchange info spells them (trailing zeros included).
const GRIDS: &[&str] = &[
    "0.00000001",
    "0.00000100",
    "0.00001000",
    "0.001",
    "0.01000000",
    "0.05",
    "0.25",
    "1.00000000",
    "10",
    "100",
];

/// The relative float noise sizing may add when rounding: a few doubles.
const NOISE: f64 = 8.0 * f64::EPSILON;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

fn f(decimal: Decimal) -> f64 {
    decimal.to_string().parse().expect("decimal as double")
}

/// A small deterministic generator (xorshift64*), so a failure names inputs that reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The positive `x` moved by `ulps` doubles (negative: down).
fn nudge(x: f64, ulps: i64) -> f64 {
    f64::from_bits(x.to_bits().saturating_add_signed(ulps))
}

/// A value near the grid of `step`: on a point, a few doubles off one, near a midpoint, a float-built multiple,
/// or anywhere. Kept below the size where rounding returns values as they are.
fn value_near_grid(rng: &mut Rng, step: Decimal) -> f64 {
    // At most 2^44 units of the step's last decimal, well inside what rounding handles exactly.
    let units_per_step = step.normalize().mantissa().max(1) as u64;
    let max_count = ((1u64 << 44) / units_per_step).max(10);
    let scale = 10u64.pow(rng.below(13) as u32).min(max_count);
    let n = Decimal::from(rng.below(scale) + 1);
    let on_point = f(n * step);
    match rng.below(7) {
        0 => on_point,
        1 => nudge(on_point, rng.below(13) as i64 - 6),
        2 => nudge(f(n * step + step / Decimal::TWO), rng.below(13) as i64 - 6),
        // n steps built with float maths, as a strategy would: n * step and sums of two decimals.
        3 => f(n) * f(step),
        4 => f(n * step / Decimal::from(3)) * 3.0,
        5 => f((n - Decimal::ONE) * step) + f(step),
        _ => on_point * (0.5 + rng.unit()),
    }
}

/// Whether doubles resolve the grid of `step` around `x` (below 2^48 units of the step's last decimal); beyond,
/// rounding returns values as they are and a double cannot name a grid point exactly.
fn resolvable(x: f64, step: Decimal) -> bool {
    x.abs() * 10f64.powi(step.normalize().scale() as i32) < 281_474_976_710_656.0
}

fn plain_vm() -> Lua {
    let lua = Lua::new();
    let package: Table = lua.globals().get("package").expect("package library");
    package
        .set("path", root().join("stdlib/?.lua").display().to_string())
        .expect("set package.path");
    lua
}

fn require_sizing(lua: &Lua) -> Table {
    lua.load("return require('sizing')").eval().expect("require sizing")
}

#[test]
fn lua_rounding_agrees_with_the_host_everywhere() {
    let lua = plain_vm();
    assert!(
        lua.globals().get::<Value>("market").unwrap().is_nil(),
        "a plain VM has no host"
    );
    let sizing = require_sizing(&lua);
    let modes: Vec<(Rounding, Function)> = [
        (Rounding::Down, "round_to_step"),
        (Rounding::Up, "ceil_to_step"),
        (Rounding::Nearest, "round_to_tick"),
    ]
    .into_iter()
    .map(|(mode, name)| (mode, sizing.get(name).expect("sizing function")))
    .collect();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    let mut check = |value: f64, step: Decimal| {
        for (mode, lua_round) in &modes {
            let host = grid::round_to_step(value, step, *mode).expect("host rounding");
            let lua: f64 = lua_round.call((value, f(step))).expect("sizing rounding");
            assert!(
                lua == host,
                "{mode:?} {value:?} on {step}: sizing gives {lua:?}, the host {host:?}"
            );
            checked += 1;
        }
    };
    for step in GRIDS.iter().map(|s| d(s)) {
        for value in [0.1 + 0.2, 3.0 * 0.7, 100.005, 0.125, 1e-9, 2.8e6, 1e300] {
            check(value, step);
            check(-value, step);
        }
        for _ in 0..3000 {
            let value = value_near_grid(&mut rng, step);
            check(value, step);
            check(-value, step);
        }
    }
    assert!(checked > 100_000, "only {checked} checks ran");
}

#[test]
fn a_host_rounding_function_is_used_when_there_is_one() {
    let lua = plain_vm();
    lua.load("market = { round_step = function(x, step, mode) return 42 end }")
        .exec()
        .unwrap();
    let sizing = require_sizing(&lua);
    let rounded: f64 = sizing
        .get::<Function>("round_to_step")
        .unwrap()
        .call((1.0, 0.1))
        .unwrap();
    assert_eq!(rounded, 42.0);
}

/// Exchange rules of one generated symbol, as the host holds them and as `market.info` hands them to Lua.
struct Symbol {
    info: SymbolInfo,
    table: Table,
}

fn symbol(lua: &Lua, rng: &mut Rng) -> Symbol {
    let tick = d(rng.pick(GRIDS));
    let step = d(rng.pick(GRIDS));
    let min_qty = step * Decimal::from(rng.below(5) + 1);
    let max_qty = rng.pick(&[Decimal::ZERO, d("9000"), step * Decimal::from(1_000_000)]);
    let min_notional = d(rng.pick(&["0", "0.0001", "1", "5", "10.00000000"]));
    let max_notional = d(rng.pick(&["0", "100000", "9000000"]));
    let info = SymbolInfo {
        symbol: "GENUSDT".into(),
        base: "GEN".into(),
        quote: "USDT".into(),
        status: "TRADING".into(),
        tick_size: tick,
        min_price: tick,
        max_price: Decimal::ZERO,
        step_size: step,
        min_qty,
        max_qty,
        market_step_size: Decimal::ZERO,
        market_min_qty: Decimal::ZERO,
        market_max_qty: Decimal::ZERO,
        min_notional,
        apply_min_to_market: true,
        max_notional,
        apply_max_to_market: false,
        max_num_orders: None,
        base_precision: 8,
        quote_precision: 8,
    };
    let table = lua.create_table().unwrap();
    for (key, value) in [
        ("tick_size", tick),
        ("step_size", step),
        ("min_qty", min_qty),
        ("max_qty", max_qty),
        ("min_notional", min_notional),
        ("max_notional", max_notional),
    ] {
        table.set(key, f(value)).unwrap();
    }
    table.set("symbol", "GENUSDT").unwrap();
    Symbol { info, table }
}

fn limit_buy(quantity: f64, price: f64) -> OrderRequest {
    OrderRequest::limit("GENUSDT", Side::Buy, quantity, price)
}

fn accepted(info: &SymbolInfo, quantity: f64, price: f64) -> Result<(), String> {
    symbols::validate(info, &limit_buy(quantity, price), None)
        .map(|_| ())
        .map_err(|err| err.message)
}

#[test]
fn sizing_quantities_pass_the_hosts_order_checks() {
    let dir = tempfile::tempdir().unwrap();
    let vm = crate::support::probe_vm(dir.path(), "return {}");
    let lua = vm.lua();
    let sizing = require_sizing(lua);
    let round_to_tick: Function = sizing.get("round_to_tick").unwrap();
    let clamp_qty: Function = sizing.get("clamp_qty").unwrap();
    let min_qty_at: Function = sizing.get("min_qty_at").unwrap();
    let fraction_of_balance: Function = sizing.get("fraction_of_balance").unwrap();
    let mut rng = Rng(0x5eed_1234_abcd_0002);
    let (mut sized, mut refused) = (0, 0);
    for _ in 0..300 {
        let Symbol { info, table } = symbol(lua, &mut rng);
        for _ in 0..40 {
            let price: f64 = round_to_tick
                .call((value_near_grid(&mut rng, info.tick_size), f(info.tick_size)))
                .unwrap();
            let wanted = value_near_grid(&mut rng, info.step_size);
            let context = format!(
                "tick {} step {} min_qty {} max_qty {} min_notional {} max_notional {}: qty {wanted:?} at {price:?}",
                info.tick_size, info.step_size, info.min_qty, info.max_qty, info.min_notional, info.max_notional
            );

            let (qty, why): (Option<f64>, Option<String>) = clamp_qty.call((&table, wanted, price)).unwrap();
            match qty {
                Some(qty) => {
                    sized += 1;
                    assert!(qty <= wanted * (1.0 + NOISE), "{context}: rounded up to {qty:?}");
                    let down = grid::round_qty(&info, wanted).unwrap();
                    let capped = !info.max_qty.is_zero() && down > f(info.max_qty);
                    assert!(
                        capped || qty == down,
                        "{context}: {qty:?} is not the largest step below"
                    );
                    if let Err(err) = accepted(&info, qty, price) {
                        panic!("{context}: sizing gave {qty:?}, the host refuses it: {err}");
                    }
                }
                None => {
                    refused += 1;
                    let why = why.expect("a refusal says why");
                    let mut down = grid::round_qty(&info, wanted).unwrap();
                    if !info.max_qty.is_zero() {
                        down = down.min(grid::round_qty(&info, f(info.max_qty)).unwrap());
                    }
                    assert!(
                        down <= 0.0 || accepted(&info, down, price).is_err(),
                        "{context}: sizing refused ({why}) a quantity the host accepts"
                    );
                }
            }

            let smallest: f64 = min_qty_at.call((&table, price)).unwrap();
            let fits_max = resolvable(smallest, info.step_size)
                && (info.max_qty.is_zero() || smallest <= f(info.max_qty))
                && (info.max_notional.is_zero() || smallest * price <= f(info.max_notional));
            if fits_max {
                if let Err(err) = accepted(&info, smallest, price) {
                    panic!("{context}: min_qty_at gave {smallest:?}, the host refuses it: {err}");
                }
                let (again, _): (Option<f64>, Option<String>) = clamp_qty.call((&table, smallest, price)).unwrap();
                assert_eq!(
                    again,
                    Some(smallest),
                    "{context}: clamp_qty refuses min_qty_at's quantity"
                );
            }
            let one_less = f(d(&smallest.to_string()) - info.step_size);
            assert!(
                one_less <= 0.0 || !resolvable(smallest, info.step_size) || accepted(&info, one_less, price).is_err(),
                "{context}: min_qty_at gave {smallest:?}, yet {one_less:?} is accepted"
            );

            let free = value_near_grid(&mut rng, d("0.00000001"));
            let fraction = rng.pick(&[1.0, 0.5, 0.1, 0.3, 1.0 / 3.0]);
            let (qty, _): (Option<f64>, Option<String>) =
                fraction_of_balance.call((free, fraction, price, &table)).unwrap();
            if let Some(qty) = qty {
                assert!(
                    qty * price <= free * fraction * (1.0 + NOISE),
                    "{context}: {qty:?} at {price:?} spends more than {fraction} of {free:?}"
                );
                if let Err(err) = accepted(&info, qty, price) {
                    panic!("{context}: fraction_of_balance gave {qty:?}, the host refuses it: {err}");
                }
            }
        }
    }
    assert!(
        sized > 1000 && refused > 100,
        "too few cases of one kind: {sized} sized, {refused} refused"
    );
}

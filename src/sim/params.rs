//! Request parameters, from a query string, a form body or a WebSocket API `params` object,
//! with Binance's validation errors.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::error::ApiErr;

/// The most decimals the exchange accepts in a price or quantity.
const MAX_DECIMALS: u32 = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
    /// The account the request's API key authenticated (0 for unsigned requests): what the
    /// handlers read and change is this account's.
    account: u16,
}

impl Params {
    /// These parameters as sent by `account` (set by the transports once the key is verified).
    pub fn for_account(mut self, account: u16) -> Self {
        self.account = account;
        self
    }

    pub fn account(&self) -> u16 {
        self.account
    }

    /// Parses `a=1&b=2` pieces (query then body); a repeated name is refused like the exchange does.
    pub fn from_encoded(parts: &[&str]) -> Result<Self, ApiErr> {
        let mut params = Params::default();
        for part in parts {
            for (k, v) in url::form_urlencoded::parse(part.as_bytes()) {
                params.push(k.into_owned(), v.into_owned())?;
            }
        }
        Ok(params)
    }

    /// WebSocket API params: strings as they are, numbers and booleans as their JSON text.
    pub fn from_json(map: &serde_json::Map<String, serde_json::Value>) -> Result<Self, ApiErr> {
        let mut params = Params::default();
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Null => continue,
                _ => return Err(ApiErr::illegal_chars(k, "a string, number or boolean")),
            };
            params.push(k.clone(), text)?;
        }
        Ok(params)
    }

    /// Parameters built by the simulator itself (an order list's order read as a plain order).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params { pairs, account: 0 }
    }

    fn push(&mut self, k: String, v: String) -> Result<(), ApiErr> {
        if self.pairs.iter().any(|(name, _)| *name == k) {
            return Err(ApiErr::bad(-1101, "Duplicate values for a parameter detected."));
        }
        self.pairs.push((k, v));
        Ok(())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A present, non-empty value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, ApiErr> {
        self.get(name).ok_or_else(|| ApiErr::mandatory(name))
    }

    /// Refuses parameters the endpoint does not read (-1104), as the exchange does.
    pub fn only(&self, allowed: impl Fn(&str) -> bool) -> Result<(), ApiErr> {
        let read = self.pairs.iter().filter(|(k, _)| allowed(k)).count();
        if read != self.pairs.len() {
            return Err(ApiErr::bad(
                -1104,
                format!(
                    "Not all sent parameters were read; read '{read}' parameter(s) but was sent '{}'.",
                    self.pairs.len()
                ),
            ));
        }
        Ok(())
    }

    pub fn decimal(&self, name: &str) -> Result<Option<Decimal>, ApiErr> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        let legal = "^([0-9]{1,20})(\\.[0-9]{1,20})?$";
        if !matches_decimal_pattern(raw) {
            return Err(ApiErr::illegal_chars(name, legal));
        }
        let value = Decimal::from_str(raw).map_err(|_| ApiErr::illegal_chars(name, legal))?;
        if value.normalize().scale() > MAX_DECIMALS {
            return Err(ApiErr::bad(
                -1111,
                format!("Parameter '{name}' has too much precision."),
            ));
        }
        Ok(Some(value))
    }

    pub fn uint(&self, name: &str) -> Result<Option<u64>, ApiErr> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        raw.parse::<u64>()
            .map(Some)
            .map_err(|_| ApiErr::illegal_chars(name, "^[0-9]{1,20}$"))
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiErr> {
        let Some(raw) = self.get(name) else { return Ok(None) };
        raw.parse::<i64>()
            .map(Some)
            .map_err(|_| ApiErr::illegal_chars(name, "^-?[0-9]{1,20}$"))
    }

    /// `limit` within `1..=max`, or `default` when absent.
    pub fn limit(&self, default: u64, max: u64) -> Result<u64, ApiErr> {
        match self.uint("limit")? {
            None => Ok(default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(ApiErr::bad(
                -1100,
                format!("Illegal characters found in parameter 'limit'; legal range is '1..{max}'."),
            )),
        }
    }

    /// A symbol name: upper-case ASCII letters and digits only (checked before lookup so
    /// non-ASCII input gets the exchange's -1100, not a panic or a lookup miss).
    pub fn symbol(&self) -> Result<Option<String>, ApiErr> {
        let Some(raw) = self.get("symbol") else { return Ok(None) };
        check_symbol_chars(raw)?;
        Ok(Some(raw.to_string()))
    }

    /// `symbols=["BTCUSDT","ETHUSDT"]` (a JSON array in a query parameter).
    pub fn symbols(&self) -> Result<Option<Vec<String>>, ApiErr> {
        let Some(raw) = self.get("symbols") else {
            return Ok(None);
        };
        let list: Vec<String> = serde_json::from_str(raw).map_err(|_| {
            ApiErr::illegal_chars("symbols", "^\\[\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}\\]$")
        })?;
        for s in &list {
            check_symbol_chars(s)?;
        }
        Ok(Some(list))
    }
}

/// `^([0-9]{1,20})(\.[0-9]{1,20})?$`, the exchange's pattern for prices and quantities.
fn matches_decimal_pattern(raw: &str) -> bool {
    let digits = |s: &str| (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    match raw.split_once('.') {
        Some((int, frac)) => digits(int) && digits(frac),
        None => digits(raw),
    }
}

fn check_symbol_chars(raw: &str) -> Result<(), ApiErr> {
    let ok = (1..=20).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiErr::illegal_chars("symbol", "^[A-Z0-9-_.]{1,20}$"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_query_and_body_and_refuses_duplicates() {
        let p = Params::from_encoded(&["symbol=BTCUSDT&limit=5", "side=BUY"]).unwrap();
        assert_eq!(
            (p.get("symbol"), p.get("side"), p.iter().count()),
            (Some("BTCUSDT"), Some("BUY"), 3)
        );
        let dup = Params::from_encoded(&["a=1", "a=2"]).unwrap_err();
        assert_eq!(dup.code, -1101);
    }

    #[test]
    fn validates_values() {
        let p = Params::from_encoded(&["symbol=BTC%C3%A9&q=1.5e3&x=0.000000001&limit=6000"]).unwrap();
        assert_eq!(p.symbol().unwrap_err().code, -1100);
        assert_eq!(p.decimal("q").unwrap_err().code, -1100);
        assert_eq!(p.decimal("x").unwrap_err().code, -1111);
        for malformed in [".5", "1.", "1.2.3", "123456789012345678901", "1.123456789012345678901"] {
            let one = Params::from_encoded(&[&format!("q={malformed}")]).unwrap();
            assert_eq!(one.decimal("q").unwrap_err().code, -1100, "{malformed}");
        }
        let longest = Params::from_encoded(&["q=12345678901234567890.10000000"]).unwrap();
        assert!(longest.decimal("q").unwrap().is_some());
        assert_eq!(p.limit(100, 5000).unwrap_err().code, -1100);
        assert_eq!(p.only(|k| k == "symbol").unwrap_err().code, -1104);
        assert_eq!(p.require("missing").unwrap_err().code, -1102);
    }
}

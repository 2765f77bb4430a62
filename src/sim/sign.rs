//! Request authentication: API key, signature (HMAC-SHA256 or Ed25519, by the key's type) and
//! the timestamp / recvWindow rule.

use ed25519_dalek::VerifyingKey;
use rust_decimal::Decimal;

use std::borrow::Cow;

use super::config::{paper_credentials, SimConfig, PAPER_API_KEY};
use super::error::ApiErr;
use super::params::Params;
use crate::exchange::binance::transport::sign::{ed25519_matches, hmac_matches};

/// Largest `recvWindow` the exchange accepts (ms).
const MAX_RECV_WINDOW: u64 = 60_000;
const DEFAULT_RECV_WINDOW: u64 = 5_000;

/// `raw` without its `signature=` pair, byte for byte otherwise.
fn without_signature(raw: &str) -> String {
    raw.split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("signature="))
        .collect::<Vec<_>>()
        .join("&")
}

/// REST: the signature covers the query string followed, without separator, by the body.
pub fn rest_payload(query: &str, body: &str) -> String {
    without_signature(query) + &without_signature(body)
}

/// The accounts' API keys: the first account's HMAC key, one HMAC key for each further account,
/// and any Ed25519 keys (each of the account it names).
pub struct Credentials<'a> {
    config: &'a SimConfig,
}

/// How a request sent with a known API key is verified.
pub enum Verifier<'a> {
    Hmac(Cow<'a, str>),
    Ed25519(&'a VerifyingKey),
}

impl<'a> Credentials<'a> {
    pub fn of(config: &'a SimConfig) -> Self {
        Credentials { config }
    }

    /// The sent key's verifier and account; -2014 without a key, -2015 for an unknown one.
    pub fn check_key(&self, sent: Option<&str>) -> Result<(Verifier<'a>, u16), ApiErr> {
        let config = self.config;
        match sent {
            None | Some("") => Err(ApiErr::bad_key_format()),
            Some(k) if k == config.api_key => Ok((Verifier::Hmac(Cow::Borrowed(&config.api_secret)), 0)),
            Some(k) => match config.ed25519_keys.iter().find(|key| key.api_key == k) {
                Some(key) => Ok((Verifier::Ed25519(&key.public_key), key.account)),
                None => {
                    let account = self.further_account(k).ok_or_else(ApiErr::bad_key)?;
                    Ok((Verifier::Hmac(Cow::Owned(paper_credentials(account).1)), account))
                }
            },
        }
    }

    /// The account a key belongs to, unverified (for the usage headers of an answer); `None` for
    /// an unknown key.
    pub fn account_of(&self, sent: &str) -> Option<u16> {
        if sent == self.config.api_key {
            return Some(0);
        }
        match self.config.ed25519_keys.iter().find(|k| k.api_key == sent) {
            Some(key) => Some(key.account),
            None => self.further_account(sent),
        }
    }

    /// Which of accounts 1.. signs with `key` ([`paper_credentials`]).
    fn further_account(&self, key: &str) -> Option<u16> {
        let n: u16 = key.strip_prefix(PAPER_API_KEY)?.strip_prefix('-')?.parse().ok()?;
        (n >= 1 && n < self.config.accounts && paper_credentials(n).0 == key).then_some(n)
    }
}

impl Verifier<'_> {
    /// Checks `timestamp`/`recvWindow` against the server clock, then the signature over `payload`.
    pub fn check_signed(&self, params: &Params, payload: &str, server_ms: i64) -> Result<(), ApiErr> {
        check_timestamp(params, server_ms)?;
        let signature = params.require("signature")?;
        let valid = match self {
            Verifier::Hmac(secret) => hmac_matches(secret, payload, signature),
            Verifier::Ed25519(key) => ed25519_matches(key, payload, signature),
        };
        if valid {
            Ok(())
        } else {
            Err(ApiErr::bad_signature())
        }
    }
}

/// Accepts when `timestamp < serverTime + 1000` and `serverTime - timestamp <= recvWindow`.
pub fn check_timestamp(params: &Params, server_ms: i64) -> Result<(), ApiErr> {
    let raw = params
        .uint("timestamp")?
        .ok_or_else(|| ApiErr::mandatory("timestamp"))?;
    // Microsecond timestamps (16 digits) are accepted too.
    let ts_ms = if raw >= 10_000_000_000_000 { raw / 1000 } else { raw } as i64;
    let window = match params.get("recvWindow") {
        None => Decimal::from(DEFAULT_RECV_WINDOW),
        Some(raw) => raw
            .parse::<Decimal>()
            .ok()
            .filter(|w| *w > Decimal::ZERO && w.scale() <= 3)
            .ok_or_else(|| ApiErr::illegal_chars("recvWindow", "^[0-9]{1,5}(\\.[0-9]{1,3})?$"))?,
    };
    if window > Decimal::from(MAX_RECV_WINDOW) {
        return Err(ApiErr::bad(-1131, "recvWindow must be less than 60000"));
    }
    if ts_ms >= server_ms + 1000 {
        return Err(ApiErr::bad(
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ));
    }
    if Decimal::from(server_ms - ts_ms) > window {
        return Err(ApiErr::bad(
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::binance::transport::sign::{hmac_hex, ws_api_payload};

    const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    #[test]
    fn documented_rest_vector() {
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            hmac_hex(SECRET, &rest_payload(query, "")),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // Split between query and body, with the signature appended: same payload.
        let (q, b) = query.split_at(40);
        assert_eq!(rest_payload(&format!("{q}&signature=ab"), b), query);
    }

    #[test]
    fn documented_ws_api_vector() {
        use crate::exchange::binance::transport::sign::doc_example as doc;
        let mut map = serde_json::Map::new();
        for (k, v) in doc::PARAMS
            .into_iter()
            .chain([("apiKey", doc::API_KEY), ("signature", "x")])
        {
            map.insert(k.to_string(), serde_json::Value::from(v));
        }
        map.insert("recvWindow".to_string(), serde_json::Value::from(doc::RECV_WINDOW));
        map.insert("timestamp".to_string(), serde_json::Value::from(doc::TIMESTAMP));
        let params = Params::from_json(&map).unwrap();
        assert_eq!(hmac_hex(doc::SECRET, &ws_api_payload(params.iter())), doc::SIGNATURE);
    }

    #[test]
    fn timestamp_window() {
        let p = |s: &str| Params::from_encoded(&[s]).unwrap();
        assert!(check_timestamp(&p("timestamp=10000"), 10_500).is_ok());
        assert!(check_timestamp(&p("timestamp=10999"), 10_000).is_ok());
        assert_eq!(check_timestamp(&p("timestamp=11000"), 10_000).unwrap_err().code, -1021);
        assert_eq!(check_timestamp(&p("timestamp=1000"), 7_000).unwrap_err().code, -1021);
        assert!(check_timestamp(&p("timestamp=1000&recvWindow=6000"), 7_000).is_ok());
        assert_eq!(
            check_timestamp(&p("timestamp=1000&recvWindow=60001"), 7_000)
                .unwrap_err()
                .code,
            -1131
        );
        assert_eq!(check_timestamp(&p(""), 7_000).unwrap_err().code, -1102);
    }
}

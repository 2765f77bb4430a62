//! HMAC-SHA256 request signing, as Binance spot documents it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex HMAC-SHA256 of `payload` under `secret` (the exchange's signature format).
pub fn hmac_hex(secret: &str, payload: &str) -> String {
    hex::encode(keyed(secret, payload).finalize().into_bytes())
}

/// Whether `signature_hex` is the signature of `payload` under `secret`, compared in constant time.
pub fn hmac_matches(secret: &str, payload: &str, signature_hex: &str) -> bool {
    match hex::decode(signature_hex) {
        Ok(signature) => keyed(secret, payload).verify_slice(&signature).is_ok(),
        Err(_) => false,
    }
}

fn keyed(secret: &str, payload: &str) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    mac
}

/// REST: the signed payload is the query string concatenated, without a separator, with the body.
pub fn rest_signature(secret: &str, query: &str, body: &str) -> String {
    let mut payload = String::with_capacity(query.len() + body.len());
    payload.push_str(query);
    payload.push_str(body);
    hmac_hex(secret, &payload)
}

/// WebSocket API: every parameter except `signature` (`apiKey` included), sorted by
/// name, joined as `k=v&...`. Both the client and the simulator sign and check with this.
pub fn ws_api_payload<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params.into_iter().filter(|(k, _)| *k != "signature").collect();
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut payload = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            payload.push('&');
        }
        payload.push_str(k);
        payload.push('=');
        payload.push_str(v);
    }
    payload
}

/// Signs a WebSocket API `params` object: strings as they are, other values as their JSON text.
pub fn ws_api_signature(secret: &str, params: &serde_json::Map<String, serde_json::Value>) -> String {
    let texts: Vec<(&str, String)> = params
        .iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.as_str(), text)
        })
        .collect();
    hmac_hex(secret, &ws_api_payload(texts.iter().map(|(k, v)| (*k, v.as_str()))))
}

/// The WebSocket API signing example of the exchange's documentation: a test vector for the client
/// and the simulator alike.
#[cfg(test)]
pub(crate) mod doc_example {
    pub const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
    pub const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
    pub const PARAMS: [(&str, &str); 6] = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01000000"),
        ("price", "52000.00"),
    ];
    pub const RECV_WINDOW: u64 = 100;
    pub const TIMESTAMP: i64 = 1645423376532;
    pub const SIGNATURE: &str = "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24";
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

    #[test]
    fn rest_vector_from_the_docs() {
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            rest_signature(DOC_SECRET, query, ""),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // Split between query and body, the signature is the same.
        let (q, b) = query.split_at(40);
        assert_eq!(rest_signature(DOC_SECRET, q, b), rest_signature(DOC_SECRET, query, ""));
    }

    #[test]
    fn matches_only_the_right_signature() {
        let signature = hmac_hex(DOC_SECRET, "a=1");
        assert!(hmac_matches(DOC_SECRET, "a=1", &signature));
        assert!(hmac_matches(DOC_SECRET, "a=1", &signature.to_uppercase()));
        assert!(!hmac_matches(DOC_SECRET, "a=2", &signature));
        assert!(!hmac_matches("other", "a=1", &signature));
        assert!(!hmac_matches(DOC_SECRET, "a=1", "not hex"));
    }

    #[test]
    fn ws_api_vector_from_the_docs() {
        let params: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            r#"{"symbol":"BTCUSDT","side":"SELL","type":"LIMIT","timeInForce":"GTC","quantity":"0.01000000",
                "price":"52000.00","recvWindow":100,"timestamp":1645423376532,
                "apiKey":"vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A","signature":"ignored"}"#,
        )
        .unwrap();
        assert_eq!(
            ws_api_payload([("b", "2"), ("signature", "x"), ("a", "1")]),
            "a=1&b=2",
            "sorted by name, signature left out"
        );
        assert_eq!(
            ws_api_signature(DOC_SECRET, &params),
            "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
        );
    }
}

//! Request signing, as Binance spot documents it: HMAC-SHA256 (hex) or Ed25519 (base64) keys. The
//! one signer of both transports ([`Signing`]), and the payloads the simulator checks against.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What signs requests: the API key's type decides the signature's form.
#[derive(Clone)]
pub enum Signer {
    /// An HMAC secret; signatures are lower-case hex HMAC-SHA256.
    Hmac(HmacKey),
    /// An Ed25519 private key (the exchange's recommended type); signatures are base64.
    Ed25519(Arc<SigningKey>),
}

impl Signer {
    /// Reads an unencrypted PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`).
    /// The error never quotes the key.
    pub fn ed25519_from_pem(pem: &str) -> Result<Signer, String> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(|key| Signer::Ed25519(Arc::new(key)))
            .map_err(|e| format!("not an unencrypted PKCS#8 PEM Ed25519 private key ({e})"))
    }

    /// The signature of `payload`, in the form the exchange expects for this key type.
    pub fn sign(&self, payload: &str) -> String {
        match self {
            Signer::Hmac(key) => key.sign_hex(payload),
            Signer::Ed25519(key) => BASE64.encode(key.sign(payload.as_bytes()).to_bytes()),
        }
    }

    /// "HMAC" or "Ed25519", for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Signer::Hmac(_) => "HMAC",
            Signer::Ed25519(_) => "Ed25519",
        }
    }
}

impl PartialEq for Signer {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Signer::Hmac(a), Signer::Hmac(b)) => a.secret == b.secret,
            (Signer::Ed25519(a), Signer::Ed25519(b)) => a.verifying_key() == b.verifying_key(),
            _ => false,
        }
    }
}

impl Eq for Signer {}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({}, <redacted>)", self.kind())
    }
}

/// An HMAC-SHA256 secret, keyed once: HMAC hashes the padded key before any payload, so each
/// signature starts from a copy of that state instead of hashing the key again (on the order path).
#[derive(Clone)]
pub struct HmacKey {
    secret: String,
    keyed: HmacSha256,
}

impl HmacKey {
    pub fn new(secret: impl Into<String>) -> HmacKey {
        let secret = secret.into();
        // HMAC accepts keys of any length, so this cannot fail.
        let keyed = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        HmacKey { secret, keyed }
    }

    /// Lower-case hex HMAC-SHA256 of `payload` (the same as [`hmac_hex`] with this secret).
    pub fn sign_hex(&self, payload: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(payload.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

impl From<String> for HmacKey {
    fn from(secret: String) -> HmacKey {
        HmacKey::new(secret)
    }
}

impl From<&str> for HmacKey {
    fn from(secret: &str) -> HmacKey {
        HmacKey::new(secret)
    }
}

/// Whether `signature_base64` is `key`'s Ed25519 signature of `payload` (case-sensitive, as base64 is).
pub fn ed25519_matches(key: &VerifyingKey, payload: &str, signature_base64: &str) -> bool {
    let Ok(bytes) = BASE64.decode(signature_base64) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify_strict(payload.as_bytes(), &signature).is_ok()
}

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

/// What a signed request adds to its parameters, over either transport: the receive window, the
/// time, the API key (a parameter on the WebSocket API, a header over HTTP) and the signature.
pub struct Signing<'a> {
    pub api_key: &'a str,
    pub signer: &'a Signer,
    pub recv_window_ms: u64,
    pub timestamp_ms: i64,
}

impl Signing<'_> {
    /// REST: appends `recvWindow`, `timestamp` and the signature of the whole query to the
    /// URL-encoded `query` (the exchange signs the query string as it is sent).
    pub fn sign_query(&self, query: &mut String) {
        use std::fmt::Write as _;
        if !query.is_empty() {
            query.push('&');
        }
        // Writing to a `String` cannot fail; digits need no encoding.
        let _ = write!(
            query,
            "recvWindow={}&timestamp={}",
            self.recv_window_ms, self.timestamp_ms
        );
        let signature = self.signer.sign(query);
        query.push_str("&signature=");
        match self.signer {
            // Hex passes unchanged.
            Signer::Hmac(_) => query.push_str(&signature),
            // Base64 has `+`, `/` and `=` to encode.
            Signer::Ed25519(_) => query.extend(url::form_urlencoded::byte_serialize(signature.as_bytes())),
        }
    }

    /// WebSocket API: the signature of `params` with `apiKey`, `recvWindow` and `timestamp` added
    /// (the frame must carry those three as they are signed here).
    pub fn ws_api_signature(&self, params: &[(&str, &str)]) -> String {
        let (recv_window, timestamp) = (self.recv_window_ms.to_string(), self.timestamp_ms.to_string());
        let extra = [
            ("apiKey", self.api_key),
            ("recvWindow", recv_window.as_str()),
            ("timestamp", timestamp.as_str()),
        ];
        self.signer.sign(&ws_api_payload(params.iter().copied().chain(extra)))
    }
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
pub fn ws_api_signature(signer: &Signer, params: &serde_json::Map<String, serde_json::Value>) -> String {
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
    signer.sign(&ws_api_payload(texts.iter().map(|(k, v)| (*k, v.as_str()))))
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

    fn doc_signer() -> Signer {
        Signer::Hmac(DOC_SECRET.into())
    }

    /// RFC 8032, section 7.1, TEST 1: the private key's seed, its public key, and the signature of
    /// the empty message.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_SIGNATURE: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    /// The RFC key as `openssl genpkey -algorithm ed25519` writes one: PKCS#8 DER (a fixed
    /// 16-byte prefix, then the seed) in a PEM frame.
    fn rfc_pem() -> String {
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend(hex::decode(RFC_SEED).unwrap());
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            BASE64.encode(der)
        )
    }

    #[test]
    fn ed25519_keys_load_from_pem_and_sign_as_rfc_8032_says() {
        let signer = Signer::ed25519_from_pem(&rfc_pem()).unwrap();
        let Signer::Ed25519(key) = &signer else {
            panic!("an Ed25519 signer");
        };
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), RFC_PUBLIC);
        let signature = signer.sign("");
        assert_eq!(hex::encode(BASE64.decode(&signature).unwrap()), RFC_SIGNATURE);
        assert!(ed25519_matches(&key.verifying_key(), "", &signature));
        assert!(!ed25519_matches(&key.verifying_key(), "a=1", &signature));
        assert!(!ed25519_matches(&key.verifying_key(), "", "not base64!"));
        assert!(!ed25519_matches(&key.verifying_key(), "", &BASE64.encode([0u8; 10])));
    }

    #[test]
    fn a_bad_key_file_is_refused_without_quoting_it() {
        for text in [
            "",
            "hello",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            let err = Signer::ed25519_from_pem(text).unwrap_err();
            assert!(err.contains("PKCS#8 PEM Ed25519"), "{err}");
            assert!(!err.contains("AAAA"), "{err}");
        }
        let signer = Signer::ed25519_from_pem(&rfc_pem()).unwrap();
        assert_eq!(format!("{signer:?}"), "Signer(Ed25519, <redacted>)");
        assert_eq!(format!("{:?}", doc_signer()), "Signer(HMAC, <redacted>)");
    }

    #[test]
    fn rest_vector_from_the_docs() {
        let signer = doc_signer();
        let signing = Signing {
            api_key: "unused over REST",
            signer: &signer,
            recv_window_ms: 5000,
            timestamp_ms: 1499827319559,
        };
        let mut query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1".to_string();
        signing.sign_query(&mut query);
        assert_eq!(
            query,
            "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000\
             &timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
        // A query of no parameters of its own is signed the same way.
        let mut bare = String::new();
        signing.sign_query(&mut bare);
        assert!(
            bare.starts_with("recvWindow=5000&timestamp=1499827319559&signature="),
            "{bare}"
        );
    }

    #[test]
    fn ed25519_signatures_are_url_encoded_in_a_query() {
        let signer = Signer::ed25519_from_pem(&rfc_pem()).unwrap();
        let signing = Signing {
            api_key: "k",
            signer: &signer,
            recv_window_ms: 1,
            timestamp_ms: 2,
        };
        let mut query = "a=1".to_string();
        signing.sign_query(&mut query);
        let signature = signer.sign("a=1&recvWindow=1&timestamp=2");
        let encoded: String = url::form_urlencoded::byte_serialize(signature.as_bytes()).collect();
        assert_eq!(query, format!("a=1&recvWindow=1&timestamp=2&signature={encoded}"));
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
    fn a_key_keyed_once_signs_every_payload_as_keying_afresh_does() {
        let key = HmacKey::new(DOC_SECRET);
        for payload in ["a=1", "", "symbol=BTCUSDT&side=BUY&timestamp=1", "a=1"] {
            assert_eq!(key.sign_hex(payload), hmac_hex(DOC_SECRET, payload), "{payload:?}");
        }
        // A secret longer than SHA-256's block is hashed first: still the same signature.
        let long = "k".repeat(100);
        assert_eq!(HmacKey::new(long.as_str()).sign_hex("x=2"), hmac_hex(&long, "x=2"));
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
            ws_api_signature(&doc_signer(), &params),
            "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
        );
    }
}

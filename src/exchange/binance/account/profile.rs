//! Exchange profiles (where to connect) and API credentials (who we are).
//!
//! Secrets are held only here and in the gateway; every human-readable form
//! (`Debug`, `Display`) redacts them, so they cannot leak into logs or errors.

use std::fmt;

use crate::exchange::binance::account::accounts::AccountVars;
use crate::exchange::binance::transport::sign::{HmacKey, Signer};

/// Which exchange a profile points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileKind {
    /// The built-in simulated exchange.
    Paper,
    /// Binance spot testnet.
    Testnet,
    /// Binance spot, real money.
    Live,
    /// Any other Binance-compatible host (given URLs).
    Custom,
}

impl ProfileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileKind::Paper => "paper",
            ProfileKind::Testnet => "testnet",
            ProfileKind::Live => "live",
            ProfileKind::Custom => "custom",
        }
    }

    /// The environment variables holding this profile's credentials: the API key, then either
    /// its HMAC secret or the path of its Ed25519 private key file.
    pub fn env_vars(self) -> Option<EnvVars> {
        match self {
            ProfileKind::Testnet => Some(EnvVars {
                key: "BINANCE_TESTNET_API_KEY",
                secret: "BINANCE_TESTNET_API_SECRET",
                key_file: "BINANCE_TESTNET_PRIVATE_KEY_FILE",
            }),
            ProfileKind::Live | ProfileKind::Custom => Some(EnvVars {
                key: "BINANCE_API_KEY",
                secret: "BINANCE_API_SECRET",
                key_file: "BINANCE_PRIVATE_KEY_FILE",
            }),
            ProfileKind::Paper => None,
        }
    }
}

/// Names of a profile's credential variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVars {
    pub key: &'static str,
    /// An HMAC secret.
    pub secret: &'static str,
    /// The path of an Ed25519 private key, PKCS#8 PEM.
    pub key_file: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing credentials for the {profile} profile: set the environment variables {missing}")]
    MissingCredentials { profile: &'static str, missing: String },
    #[error("account {account}: set the environment variable(s) {missing} (named in its [accounts] section)")]
    MissingAccountCredentials { account: String, missing: String },
    #[error("{0}")]
    Accounts(String),
    #[error("the {0} profile takes its credentials from the simulator, not from the environment")]
    NoEnvCredentials(&'static str),
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("both {secret} and {key_file} are set: the API key is either an HMAC key or an Ed25519 key; unset one")]
    TwoSecrets {
        secret: &'static str,
        key_file: &'static str,
    },
    #[error("{var} = {path}: {reason}")]
    BadKeyFile {
        var: &'static str,
        path: String,
        reason: String,
    },
    #[error("account {account}: {var} = {path}: {reason}")]
    BadAccountKeyFile {
        account: String,
        var: String,
        path: String,
        reason: String,
    },
}

/// An API key and what signs its requests: an HMAC secret or an Ed25519 private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    api_key: String,
    signer: Signer,
}

impl Credentials {
    /// An API key with an HMAC secret.
    pub fn new(api_key: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            api_key: api_key.into(),
            signer: Signer::Hmac(HmacKey::new(secret)),
        }
    }

    /// An API key with any signer, e.g. an Ed25519 key from [`Signer::ed25519_from_pem`].
    pub fn with_signer(api_key: impl Into<String>, signer: Signer) -> Self {
        Credentials {
            api_key: api_key.into(),
            signer,
        }
    }

    /// Reads the profile's credentials from the environment: the API key and either its HMAC
    /// secret or the path of its Ed25519 key file. A missing or empty variable is an error naming
    /// every variable that must be set.
    pub fn from_env(kind: ProfileKind) -> Result<Self, ConfigError> {
        Self::from_lookup(kind, |name| std::env::var(name).ok())
    }

    /// As [`Credentials::from_env`], with the variable lookup injected (tests).
    pub fn from_lookup(kind: ProfileKind, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = kind.env_vars().ok_or(ConfigError::NoEnvCredentials(kind.as_str()))?;
        let read = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let signer = match (read(vars.secret), read(vars.key_file)) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::TwoSecrets {
                    secret: vars.secret,
                    key_file: vars.key_file,
                })
            }
            (Some(secret), None) => Some(Signer::Hmac(secret.into())),
            (None, Some(path)) => Some(read_key_file(vars.key_file, &path)?),
            (None, None) => None,
        };
        match (read(vars.key), signer) {
            (Some(key), Some(signer)) => Ok(Credentials::with_signer(key, signer)),
            (key, signer) => {
                let either = format!(
                    "{} (an HMAC key) or {} (an Ed25519 key file)",
                    vars.secret, vars.key_file
                );
                let missing: Vec<String> = [(key.is_none(), vars.key.to_owned()), (signer.is_none(), either)]
                    .into_iter()
                    .filter_map(|(absent, name)| absent.then_some(name))
                    .collect();
                Err(ConfigError::MissingCredentials {
                    profile: kind.as_str(),
                    missing: missing.join(" and "),
                })
            }
        }
    }

    /// An `[accounts.NAME]` account's credentials, from the variables it names: its API key and
    /// either its HMAC secret or the path of its Ed25519 key file. A missing or empty variable is an
    /// error naming every one that must be set (never their values).
    pub fn from_account_vars(
        account: &str,
        vars: AccountVars<'_>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let read = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let (key_env, signer_env) = match vars {
            AccountVars::Hmac { key_env, secret_env } => (key_env, secret_env),
            AccountVars::Ed25519 { key_env, key_file_env } => (key_env, key_file_env),
        };
        let (key, signer_value) = match (read(key_env), read(signer_env)) {
            (Some(key), Some(value)) => (key, value),
            (key, value) => {
                return Err(ConfigError::MissingAccountCredentials {
                    account: account.to_string(),
                    missing: [(key.is_none(), key_env), (value.is_none(), signer_env)]
                        .into_iter()
                        .filter_map(|(absent, name)| absent.then_some(name))
                        .collect::<Vec<_>>()
                        .join(" and "),
                })
            }
        };
        let signer = match vars {
            AccountVars::Hmac { .. } => Signer::Hmac(signer_value.into()),
            AccountVars::Ed25519 { .. } => {
                load_key_file(&signer_value).map_err(|reason| ConfigError::BadAccountKeyFile {
                    account: account.to_string(),
                    var: signer_env.to_string(),
                    path: signer_value,
                    reason,
                })?
            }
        };
        Ok(Credentials::with_signer(key, signer))
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Crate-private: only the gateway signs.
    pub(crate) fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The key with all but its first and last four characters hidden.
    pub fn redacted_key(&self) -> String {
        let chars: Vec<char> = self.api_key.chars().collect();
        if chars.len() <= 8 {
            return "****".to_string();
        }
        let head: String = chars[..4].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}…{tail}")
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("api_key", &self.redacted_key())
            .field("signer", &self.signer)
            .finish()
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} api key {} (secret redacted)",
            self.signer.kind(),
            self.redacted_key()
        )
    }
}

/// The Ed25519 key in the file at `path` (named by `var`, for the error).
fn read_key_file(var: &'static str, path: &str) -> Result<Signer, ConfigError> {
    load_key_file(path).map_err(|reason| ConfigError::BadKeyFile {
        var,
        path: path.to_owned(),
        reason,
    })
}

/// The Ed25519 key in the file at `path`; the error says why without quoting the file.
fn load_key_file(path: &str) -> Result<Signer, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    Signer::ed25519_from_pem(&text)
}

/// Where to connect and with which credentials. URLs are bases: the client appends
/// `/api/v3/...` to `rest_url` and `/ws/...` or `/stream?streams=...` to `ws_url`;
/// `ws_api_url` is the full WebSocket API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub kind: ProfileKind,
    pub rest_url: String,
    pub ws_url: String,
    pub ws_api_url: String,
    /// Where public market-data requests go instead of `rest_url` (paper trading on another
    /// exchange's market: orders to the paper exchange, market data from the source).
    pub market_rest_url: Option<String>,
    pub credentials: Credentials,
}

impl Profile {
    pub fn live(credentials: Credentials) -> Self {
        Profile {
            kind: ProfileKind::Live,
            rest_url: "https://api.binance.com".into(),
            ws_url: "wss://stream.binance.com:9443".into(),
            ws_api_url: "wss://ws-api.binance.com:443/ws-api/v3".into(),
            market_rest_url: None,
            credentials,
        }
    }

    pub fn testnet(credentials: Credentials) -> Self {
        Profile {
            kind: ProfileKind::Testnet,
            rest_url: "https://testnet.binance.vision".into(),
            ws_url: "wss://stream.testnet.binance.vision".into(),
            ws_api_url: "wss://ws-api.testnet.binance.vision/ws-api/v3".into(),
            market_rest_url: None,
            credentials,
        }
    }

    /// The simulated exchange at the given URLs (e.g. from `SimHandle`).
    pub fn paper(rest_url: &str, ws_url: &str, ws_api_url: &str, credentials: Credentials) -> Self {
        Profile::custom(rest_url, ws_url, ws_api_url, credentials).with_kind(ProfileKind::Paper)
    }

    pub fn custom(rest_url: &str, ws_url: &str, ws_api_url: &str, credentials: Credentials) -> Self {
        Profile {
            kind: ProfileKind::Custom,
            rest_url: trim_base(rest_url),
            ws_url: trim_base(ws_url),
            ws_api_url: ws_api_url.to_string(),
            market_rest_url: None,
            credentials,
        }
    }

    /// Points this profile at other hosts, keeping its kind and credentials
    /// (`--rest-url`, `--ws-url`, `--ws-api-url`); `None` keeps the current URL.
    pub fn with_urls(mut self, rest_url: Option<&str>, ws_url: Option<&str>, ws_api_url: Option<&str>) -> Self {
        if let Some(url) = rest_url {
            self.rest_url = trim_base(url);
        }
        if let Some(url) = ws_url {
            self.ws_url = trim_base(url);
        }
        if let Some(url) = ws_api_url {
            self.ws_api_url = url.to_string();
        }
        self
    }

    /// Sends public market-data requests (depth, klines, trades, tickers, exchangeInfo) to
    /// `url` instead of `rest_url`, without the API key.
    pub fn with_market_rest(mut self, url: &str) -> Self {
        self.market_rest_url = Some(trim_base(url));
        self
    }

    pub fn with_kind(mut self, kind: ProfileKind) -> Self {
        self.kind = kind;
        self
    }

    /// "binance-paper", "binance-testnet", ...
    pub fn venue_name(&self) -> String {
        format!("binance-{}", self.kind.as_str())
    }

    /// Checks every URL parses with a scheme the client speaks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_url(&self.rest_url, &["http", "https"])?;
        check_url(&self.ws_url, &["ws", "wss"])?;
        if let Some(url) = &self.market_rest_url {
            check_url(url, &["http", "https"])?;
        }
        check_url(&self.ws_api_url, &["ws", "wss"])
    }
}

fn trim_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

fn check_url(url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| ConfigError::BadUrl {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError::BadUrl {
            url: url.to_string(),
            reason: format!("scheme must be one of {}", schemes.join(", ")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_the_secret() {
        let creds = Credentials::new("ABCDEFGHIJKLMNOP", "topsecretvalue");
        let shown = format!("{creds:?} {creds}");
        assert!(!shown.contains("topsecretvalue"), "{shown}");
        assert!(!shown.contains("EFGHIJKL"), "{shown}");
        assert!(shown.contains("ABCD…MNOP"), "{shown}");
        let profile = Profile::testnet(creds);
        assert!(!format!("{profile:?}").contains("topsecretvalue"));
    }

    #[test]
    fn missing_env_credentials_name_the_variables() {
        let err = Credentials::from_lookup(ProfileKind::Testnet, |_| None).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("BINANCE_TESTNET_API_KEY") && text.contains("BINANCE_TESTNET_API_SECRET"),
            "{text}"
        );

        let err = Credentials::from_lookup(ProfileKind::Live, |name| {
            (name == "BINANCE_API_KEY").then(|| "key".to_string())
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("BINANCE_API_SECRET") && !text.contains("BINANCE_API_KEY "),
            "{text}"
        );

        let hmac = |name: &str| (name != "BINANCE_PRIVATE_KEY_FILE").then(|| "v".to_string());
        let ok = Credentials::from_lookup(ProfileKind::Live, hmac).unwrap();
        assert_eq!((ok.api_key(), ok.signer().kind()), ("v", "HMAC"));
    }

    #[test]
    fn an_ed25519_key_comes_from_its_file_and_only_one_secret_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("key.pem");
        // RFC 8032's first test key, PKCS#8 PEM as `openssl genpkey -algorithm ed25519` writes it.
        std::fs::write(
            &pem,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let path = pem.display().to_string();
        let env = |vars: &'static [&'static str], path: String| {
            move |name: &str| match name {
                "BINANCE_TESTNET_PRIVATE_KEY_FILE" if vars.contains(&name) => Some(path.clone()),
                _ if vars.contains(&name) => Some("v".to_string()),
                _ => None,
            }
        };
        let ed = &["BINANCE_TESTNET_API_KEY", "BINANCE_TESTNET_PRIVATE_KEY_FILE"];
        let creds = Credentials::from_lookup(ProfileKind::Testnet, env(ed, path.clone())).unwrap();
        assert_eq!(creds.signer().kind(), "Ed25519");
        assert!(creds.to_string().starts_with("Ed25519 api key"), "{creds}");

        let both = &[
            "BINANCE_TESTNET_API_KEY",
            "BINANCE_TESTNET_API_SECRET",
            "BINANCE_TESTNET_PRIVATE_KEY_FILE",
        ];
        let err = Credentials::from_lookup(ProfileKind::Testnet, env(both, path.clone())).unwrap_err();
        assert!(matches!(err, ConfigError::TwoSecrets { .. }), "{err}");

        let err = Credentials::from_lookup(ProfileKind::Testnet, env(ed, "/no/such/key.pem".into())).unwrap_err();
        assert!(
            err.to_string().contains("/no/such/key.pem") && err.to_string().contains("cannot read"),
            "{err}"
        );

        std::fs::write(
            &pem,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IG1hdGVyaWFs\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Credentials::from_lookup(ProfileKind::Testnet, env(ed, path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ed25519") && !err.contains("c2VjcmV0"), "{err}");

        let err = Credentials::from_lookup(ProfileKind::Testnet, env(&["BINANCE_TESTNET_API_KEY"], String::new()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BINANCE_TESTNET_API_SECRET") && err.contains("BINANCE_TESTNET_PRIVATE_KEY_FILE"),
            "{err}"
        );
    }

    #[test]
    fn a_configured_account_signs_with_its_secret_or_its_ed25519_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("sub1.pem");
        std::fs::write(
            &pem,
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let path = pem.display().to_string();
        let ed = AccountVars::Ed25519 {
            key_env: "SUB1_KEY",
            key_file_env: "SUB1_KEY_FILE",
        };
        let env = |file: String| {
            move |name: &str| match name {
                "SUB1_KEY" => Some("sub1-key".to_string()),
                "SUB1_KEY_FILE" => Some(file.clone()),
                _ => None,
            }
        };
        let creds = Credentials::from_account_vars("sub1", ed, env(path.clone())).unwrap();
        assert_eq!((creds.api_key(), creds.signer().kind()), ("sub1-key", "Ed25519"));
        let hmac = AccountVars::Hmac {
            key_env: "SUB1_KEY",
            secret_env: "SUB1_SECRET",
        };
        let err = Credentials::from_account_vars("sub1", hmac, env(path.clone())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "account sub1: set the environment variable(s) SUB1_SECRET (named in its [accounts] section)"
        );
        let err = Credentials::from_account_vars("sub1", ed, |_| None).unwrap_err();
        assert!(err.to_string().contains("SUB1_KEY and SUB1_KEY_FILE"), "{err}");

        let err = Credentials::from_account_vars("sub1", ed, env("/no/such/key.pem".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("account sub1: SUB1_KEY_FILE = /no/such/key.pem: cannot read it"),
            "{err}"
        );
        std::fs::write(
            &pem,
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IG1hdGVyaWFs\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Credentials::from_account_vars("sub1", ed, env(path))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Ed25519") && !err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn profiles_have_documented_urls_and_accept_plain_schemes() {
        let live = Profile::live(Credentials::new("k", "s"));
        assert_eq!(live.rest_url, "https://api.binance.com");
        assert_eq!(live.venue_name(), "binance-live");
        live.validate().unwrap();
        let local = Profile::custom(
            "http://127.0.0.1:9000/",
            "ws://127.0.0.1:9000",
            "ws://127.0.0.1:9000/ws-api/v3",
            live.credentials.clone(),
        );
        assert_eq!(local.rest_url, "http://127.0.0.1:9000");
        local.validate().unwrap();
        assert!(local.with_urls(Some("ftp://x"), None, None).validate().is_err());
    }
}

//! Errors: the exchange's `{code, msg}` answers, and the simulator's own start-up failures.

use std::io;

/// Why the simulator could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot bind the simulator to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
    #[error("simulator server failed: {0}")]
    Serve(#[source] io::Error),
    #[error("invalid simulator configuration: {0}")]
    Config(String),
}

/// What a 429 / 418 answer needs beyond `{code, msg}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Seconds, for the `Retry-After` header.
    pub secs: u64,
    /// Epoch ms, for the WebSocket API's `error.data.retryAfter`.
    pub until_ms: i64,
}

/// An error answer in Binance's shape: HTTP status + `{code, msg}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErr {
    pub status: u16,
    pub code: i64,
    pub msg: String,
    pub retry: Option<RetryAfter>,
    /// Details some errors carry (a cancel-replace's two outcomes).
    pub data: Option<serde_json::Value>,
}

impl ApiErr {
    pub fn new(status: u16, code: i64, msg: impl Into<String>) -> Self {
        ApiErr {
            status,
            code,
            msg: msg.into(),
            retry: None,
            data: None,
        }
    }

    pub fn bad(code: i64, msg: impl Into<String>) -> Self {
        ApiErr::new(400, code, msg)
    }

    pub fn mandatory(param: &str) -> Self {
        ApiErr::bad(
            -1102,
            format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        )
    }

    pub fn illegal_chars(param: &str, legal: &str) -> Self {
        ApiErr::bad(
            -1100,
            format!("Illegal characters found in parameter '{param}'; legal range is '{legal}'."),
        )
    }

    pub fn not_required(param: &str) -> Self {
        ApiErr::bad(-1106, format!("Parameter '{param}' sent when not required."))
    }

    pub fn invalid_symbol() -> Self {
        ApiErr::bad(-1121, "Invalid symbol.")
    }

    pub fn filter(name: &str) -> Self {
        ApiErr::bad(-1013, format!("Filter failure: {name}"))
    }

    pub fn rejected(msg: impl Into<String>) -> Self {
        ApiErr::bad(-2010, msg)
    }

    pub fn insufficient_balance() -> Self {
        ApiErr::rejected("Account has insufficient balance for requested action.")
    }

    pub fn unknown_order_cancel() -> Self {
        ApiErr::bad(-2011, "Unknown order sent.")
    }

    pub fn no_such_order() -> Self {
        ApiErr::bad(-2013, "Order does not exist.")
    }

    pub fn bad_key() -> Self {
        ApiErr::new(401, -2015, "Invalid API-key, IP, or permissions for action.")
    }

    pub fn bad_key_format() -> Self {
        ApiErr::new(401, -2014, "API-key format invalid.")
    }

    pub fn bad_signature() -> Self {
        ApiErr::bad(-1022, "Signature for this request is not valid.")
    }

    pub fn execution_unknown() -> Self {
        ApiErr::bad(
            -1006,
            "An unexpected response was received from the message bus. Execution status unknown.",
        )
    }

    pub fn timeout_unknown() -> Self {
        ApiErr::new(
            503,
            -1007,
            "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
        )
    }

    pub fn with_retry(mut self, retry: RetryAfter) -> Self {
        self.retry = Some(retry);
        self
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    pub fn body(&self) -> serde_json::Value {
        match &self.data {
            Some(data) => serde_json::json!({ "code": self.code, "msg": self.msg, "data": data }),
            None => serde_json::json!({ "code": self.code, "msg": self.msg }),
        }
    }
}

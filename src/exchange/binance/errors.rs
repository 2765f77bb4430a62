//! Mapping exchange answers and transport failures onto the strategy API's error codes.

use crate::exchange::types::{ApiError, ErrorCode};
use crate::ledger::Verdict;

use super::account::profile::ConfigError;
use super::wire::{ErrorBody, WsApiError};

/// What a call does on the exchange; decides how an unknown outcome is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallKind {
    /// Reads state: safe to retry, an unknown outcome is just a failed read.
    Query,
    /// Changes state (place, cancel): an unknown outcome may have taken effect.
    Mutation,
}

/// Why the gateway did not get an answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// The ledger refused or the wait deadline passed; nothing was sent.
    #[error("{0}")]
    Ledger(ApiError),
    /// The endpoint has no form on the transport asked for; nothing was sent.
    #[error("{0}")]
    NoRoute(String),
    /// No connection could be made; nothing was sent.
    #[error("could not connect to {host}: {reason}")]
    Connect { host: String, reason: String },
    /// Sent (or maybe sent), but no answer arrived in time.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The connection failed after the request may have left.
    #[error("transport failure: {0}")]
    Transport(String),
    /// The client is shutting down; nothing was sent.
    #[error("the client is shutting down")]
    Stopped,
    /// The endpoint's circuit breaker is open; nothing was sent.
    #[error("{0}")]
    Unavailable(ApiError),
}

impl SendError {
    /// True when the request is known not to have reached the exchange.
    pub fn nothing_sent(&self) -> bool {
        matches!(
            self,
            SendError::Ledger(_)
                | SendError::NoRoute(_)
                | SendError::Connect { .. }
                | SendError::Stopped
                | SendError::Unavailable(_)
        )
    }

    pub fn to_api_error(&self, kind: CallKind) -> ApiError {
        match self {
            SendError::Ledger(err) | SendError::Unavailable(err) => err.clone(),
            SendError::NoRoute(what) => ApiError::new(ErrorCode::InvalidOrder, what.clone()),
            SendError::Connect { .. } => ApiError::new(ErrorCode::Network, self.to_string()),
            SendError::Stopped => ApiError::new(ErrorCode::Stopped, self.to_string()),
            SendError::Timeout(_) | SendError::Transport(_) => match kind {
                CallKind::Query => ApiError::new(ErrorCode::Network, self.to_string()),
                CallKind::Mutation => ApiError::new(
                    ErrorCode::UnknownStatus,
                    format!("{self}; the outcome is unknown and is being looked up"),
                ),
            },
        }
    }
}

/// Exchange codes that say the exchange itself is failing: -1001 (internal error), -1006 (an
/// unexpected answer from the message bus), -1007 (timeout waiting for the backend).
const FAILING_EXCHANGE_CODES: [i64; 3] = [-1001, -1006, -1007];

/// A non-success answer, from either transport: its status, and the exchange's error code and
/// message (or, when the body is not the exchange's `{code, msg}`, the start of the body).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub status: u16,
    pub code: Option<i64>,
    pub message: String,
    /// The refusal's `data`, when it carries some (a cancel-replace's outcomes).
    pub data: Option<serde_json::Value>,
}

impl Rejection {
    /// A non-success HTTP answer.
    pub fn from_http(status: u16, body: &[u8]) -> Rejection {
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(error) => Rejection {
                status,
                code: Some(error.code),
                message: error.msg,
                data: error.data,
            },
            Err(_) => Rejection {
                status,
                code: None,
                message: format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(200)])
                ),
                data: None,
            },
        }
    }

    /// A non-success WebSocket API answer and its `error` object.
    pub fn from_ws_api(status: u16, error: Option<&WsApiError>) -> Rejection {
        match error {
            Some(error) => Rejection {
                status,
                code: Some(error.code),
                message: error.msg.clone(),
                data: error.data.clone(),
            },
            None => Rejection {
                status,
                code: None,
                message: format!("HTTP {status}: no error in the answer"),
                data: None,
            },
        }
    }

    /// True when the answer says the exchange is failing (for its circuit breaker): any 5xx, or one
    /// of the internal-failure codes. A 429/418 is not one: the exchange is up and asks for less.
    pub fn exchange_failing(&self) -> bool {
        self.status >= 500
            || (self.status >= 400 && self.code.is_some_and(|code| FAILING_EXCHANGE_CODES.contains(&code)))
    }

    /// The strategy API's error for this answer. `verdict` is the usage classifier's judgement
    /// (already fed to the ledger by the gateway).
    pub fn to_api_error(&self, kind: CallKind, verdict: &Verdict, now_ms: i64) -> ApiError {
        let message = self.message.clone();
        let error = match verdict {
            Verdict::Throttled { retry_after } => ApiError::new(ErrorCode::Backoff, message)
                .with_retry_after(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX)),
            Verdict::Banned { until_ms } => {
                ApiError::new(ErrorCode::Banned, message).with_retry_after((until_ms - now_ms).max(0) as u64)
            }
            Verdict::Ok => map_status_and_code(kind, self.status, self.code, message),
        };
        match self.code {
            Some(code) => error.with_exchange_code(code),
            None => error,
        }
    }
}

fn map_status_and_code(kind: CallKind, status: u16, code: Option<i64>, message: String) -> ApiError {
    // -1006 ("unexpected response; execution status unknown") and -1007 (timeout) are, like a 5xx,
    // answers after which the request may or may not have taken effect.
    let unknown_outcome = status >= 500 || matches!(code, Some(-1006 | -1007));
    if unknown_outcome {
        return match kind {
            CallKind::Mutation => ApiError::new(
                ErrorCode::UnknownStatus,
                format!("{message} (HTTP {status}); the outcome is unknown and is being looked up"),
            ),
            CallKind::Query => ApiError::new(ErrorCode::Network, format!("{message} (HTTP {status})")),
        };
    }
    match (status, code) {
        // 403: the exchange's firewall (WAF), which also enforces rate limits.
        (429 | 403, _) | (_, Some(-1003 | -1015)) => ApiError::new(ErrorCode::Backoff, message),
        (418, _) => ApiError::new(ErrorCode::Banned, message),
        // Filter failures and malformed parameters: the request itself is wrong; retrying will not help.
        (_, Some(-1013)) | (_, Some(-1130..=-1100)) => ApiError::new(ErrorCode::InvalidOrder, message),
        _ => ApiError::new(ErrorCode::Rejected, message),
    }
}

/// Errors of [`super::BinanceVenue::connect`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{what} failed: {error}")]
    Startup { what: &'static str, error: ApiError },
    #[error("order journal: {0}")]
    Journal(String),
    #[error("could not build the exchange client")]
    Gateway(#[from] GatewayError),
}

/// Why the gateway could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the exchange client must be created within a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    #[error("could not build the HTTP client")]
    Http(#[source] reqwest::Error),
    /// The header value is not kept: it is the key.
    #[error("the API key has characters an HTTP header cannot carry")]
    ApiKeyHeader,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn map(kind: CallKind, status: u16, body: &str, verdict: Verdict) -> ApiError {
        Rejection::from_http(status, body.as_bytes()).to_api_error(kind, &verdict, 1_000_000)
    }

    fn exchange_failing(status: u16, body: &[u8]) -> bool {
        Rejection::from_http(status, body).exchange_failing()
    }

    #[test]
    fn throttle_and_ban_carry_retry_after() {
        let e = map(
            CallKind::Query,
            429,
            r#"{"code":-1003,"msg":"Too much request weight used"}"#,
            Verdict::Throttled {
                retry_after: Duration::from_secs(7),
            },
        );
        assert_eq!(
            (e.code, e.retry_after_ms, e.exchange_code),
            (ErrorCode::Backoff, Some(7000), Some(-1003))
        );
        let e = map(
            CallKind::Mutation,
            418,
            r#"{"code":-1003,"msg":"IP banned until 1120000"}"#,
            Verdict::Banned { until_ms: 1_120_000 },
        );
        assert_eq!((e.code, e.retry_after_ms), (ErrorCode::Banned, Some(120_000)));
    }

    #[test]
    fn exchange_codes_map_to_contract_codes() {
        let cases = [
            (400, -1013, CallKind::Mutation, ErrorCode::InvalidOrder),
            (400, -1100, CallKind::Mutation, ErrorCode::InvalidOrder),
            (400, -1121, CallKind::Query, ErrorCode::InvalidOrder),
            (400, -1130, CallKind::Mutation, ErrorCode::InvalidOrder),
            (400, -2010, CallKind::Mutation, ErrorCode::Rejected),
            (400, -2011, CallKind::Mutation, ErrorCode::Rejected),
            (400, -2013, CallKind::Query, ErrorCode::Rejected),
            (400, -1021, CallKind::Mutation, ErrorCode::Rejected),
            (400, -1007, CallKind::Mutation, ErrorCode::UnknownStatus),
            (400, -1006, CallKind::Mutation, ErrorCode::UnknownStatus),
            (400, -1006, CallKind::Query, ErrorCode::Network),
            (503, -1007, CallKind::Mutation, ErrorCode::UnknownStatus),
            (503, -1007, CallKind::Query, ErrorCode::Network),
        ];
        for (status, code, kind, expected) in cases {
            let body = format!(r#"{{"code":{code},"msg":"m"}}"#);
            let e = map(kind, status, &body, Verdict::Ok);
            assert_eq!(
                (e.code, e.exchange_code),
                (expected, Some(code)),
                "HTTP {status} code {code}"
            );
        }
        let e = map(CallKind::Mutation, 502, "<html>bad gateway</html>", Verdict::Ok);
        assert_eq!((e.code, e.exchange_code), (ErrorCode::UnknownStatus, None));
    }

    #[test]
    fn failing_answers_are_told_apart_from_refusals() {
        assert!(exchange_failing(503, b"Service Unavailable"));
        assert!(exchange_failing(502, b""));
        assert!(exchange_failing(400, br#"{"code":-1001,"msg":"Internal error"}"#));
        assert!(exchange_failing(400, br#"{"code":-1006,"msg":"unexpected"}"#));
        assert!(exchange_failing(408, br#"{"code":-1007,"msg":"Timeout"}"#));
        assert!(!exchange_failing(
            400,
            br#"{"code":-2010,"msg":"insufficient balance"}"#
        ));
        assert!(!exchange_failing(
            429,
            br#"{"code":-1003,"msg":"Too much request weight used"}"#
        ));
        let refused = |status, code| {
            Rejection::from_ws_api(
                status,
                Some(&WsApiError {
                    code,
                    msg: "m".into(),
                    data: None,
                }),
            )
        };
        assert!(refused(400, -1001).exchange_failing());
        assert!(!refused(400, -2010).exchange_failing());
        assert!(refused(503, -2010).exchange_failing());
    }

    #[test]
    fn transport_failures_depend_on_the_call() {
        assert_eq!(
            SendError::Timeout(5).to_api_error(CallKind::Mutation).code,
            ErrorCode::UnknownStatus
        );
        assert_eq!(
            SendError::Timeout(5).to_api_error(CallKind::Query).code,
            ErrorCode::Network
        );
        let connect = SendError::Connect {
            host: "h".into(),
            reason: "refused".into(),
        };
        assert!(connect.nothing_sent());
        assert_eq!(connect.to_api_error(CallKind::Mutation).code, ErrorCode::Network);
    }
}

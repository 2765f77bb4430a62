//! The user-data stream over the WebSocket API: `userDataStream.subscribe.signature`
//! on a charged connection, events handed to a [`UserDataHandler`], re-subscribed
//! after every reconnect (the handler then resyncs what it may have missed).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::de::IgnoredAny;
use tokio::sync::mpsc;

use crate::ledger::Lane;

use crate::exchange::binance::errors::SendError;
use crate::exchange::binance::limits::endpoints::Endpoint;
use crate::exchange::binance::transport::gateway::{Gateway, CLIENT_STRATEGY};
use crate::exchange::binance::transport::ws_api::{Pushed, WsApiClient};
use crate::exchange::binance::transport::{Body, Request};
use crate::exchange::binance::wire::{UserDataEvent, UserDataFrame};

const REQUEST_WAIT: Duration = Duration::from_secs(30);
const RECONNECT_BASE: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);

/// Receives what the user-data stream learns.
pub trait UserDataHandler: Send + Sync + 'static {
    fn on_event(&self, event: UserDataEvent);
    /// Subscribed (again): anything missed while down must be recovered by queries.
    fn on_subscribed(&self);
    /// The stream is down: order state is not current until the next `on_subscribed`.
    fn on_down(&self);
}

/// True for the exchange's `serverShutdown` event, in any of its wrappings: bare
/// (`{"e":"serverShutdown"}`), on the WebSocket API (`{"event":{...}}`) or in a combined
/// stream (`{"stream":..,"data":{...}}`). The server is about to close the connection:
/// the client reconnects at once rather than wait to be dropped.
pub fn is_server_shutdown(value: &serde_json::Value) -> bool {
    let is =
        |v: Option<&serde_json::Value>| v.and_then(|v| v.get("e")).and_then(|e| e.as_str()) == Some("serverShutdown");
    is(Some(value)) || is(value.get("event")) || is(value.get("data"))
}

/// [`is_server_shutdown`] of a text frame, cheap for every other frame.
pub fn is_server_shutdown_text(text: &str) -> bool {
    text.contains("serverShutdown")
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|value| is_server_shutdown(&value))
}

fn reconnect_delay(failures: u32) -> Duration {
    let exp = RECONNECT_BASE.saturating_mul(1 << failures.saturating_sub(1).min(10));
    exp.min(RECONNECT_MAX).mul_f64(rand::rng().random_range(0.5..1.5))
}

/// Runs until shutdown.
pub async fn run(gateway: Arc<Gateway>, handler: Arc<dyn UserDataHandler>) {
    let shutdown = gateway.shutdown().clone();
    let mut failures = 0u32;
    loop {
        match session(&gateway, handler.as_ref()).await {
            Ok(()) => failures = 0,
            Err(SendError::Stopped) => return,
            Err(error) => {
                failures += 1;
                tracing::warn!(failures, "user data stream: {error}");
            }
        }
        handler.on_down();
        if shutdown.is_triggered() {
            return;
        }
        let delay = reconnect_delay(failures.max(1));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// One connection: subscribe, then read until it ends. `Ok` means it ran and was then closed.
async fn session(gateway: &Arc<Gateway>, handler: &dyn UserDataHandler) -> Result<(), SendError> {
    let shutdown = gateway.shutdown().clone();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let client = WsApiClient::with_events(events_tx);
    let subscribe = Request::new(Endpoint::UserDataSubscribeSignature, Lane::Order).signed();
    let reply = gateway
        .send_ws_api::<IgnoredAny>(&client, CLIENT_STRATEGY, REQUEST_WAIT, &subscribe)
        .await?;
    if let Body::Refused(refusal) = &reply.body {
        client.close().await;
        let code = refusal
            .code
            .map_or_else(|| "no code".to_string(), |code| code.to_string());
        return Err(SendError::Transport(format!(
            "subscription refused ({code}): {}",
            refusal.message
        )));
    }
    handler.on_subscribed();
    loop {
        let pushed = tokio::select! {
            pushed = events.recv() => pushed,
            _ = shutdown.wait() => {
                client.close().await;
                return Err(SendError::Stopped);
            }
        };
        match pushed {
            Some(Pushed::Event(value)) => match serde_json::from_value::<UserDataFrame>(value) {
                Ok(UserDataFrame {
                    event: UserDataEvent::StreamTerminated { .. },
                    ..
                }) => {
                    client.close().await;
                    return Ok(());
                }
                Ok(frame) => handler.on_event(frame.event),
                Err(e) => tracing::warn!("skipping unreadable user data event: {e}"),
            },
            Some(Pushed::ServerShutdown) => {
                tracing::info!("the user data stream's server announced a shutdown; reconnecting now");
                client.close().await;
                return Ok(());
            }
            Some(Pushed::Ended(Ok(()))) | None => return Ok(()),
            Some(Pushed::Ended(Err(reason))) => return Err(SendError::Transport(reason)),
        }
    }
}

//! The user-data stream over the WebSocket API: `userDataStream.subscribe.signature`
//! on a charged connection, events handed to a [`UserDataHandler`], re-subscribed
//! after every reconnect (the handler then resyncs what it may have missed).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use tokio_tungstenite::tungstenite::Message;

use super::errors::SendError;
use super::gateway::Gateway;
use super::wire::{UserDataEvent, UserDataFrame, WsApiResponse};

const SUBSCRIBE_METHOD: &str = "userDataStream.subscribe.signature";
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
    let (mut sender, mut read) = gateway.connect_ws_api(REQUEST_WAIT).await?;
    let subscribe_id = sender
        .request(SUBSCRIBE_METHOD, serde_json::Map::new(), true, REQUEST_WAIT)
        .await?;
    let mut subscribed = false;
    loop {
        let frame = tokio::select! {
            frame = read.next() => frame,
            _ = shutdown.wait() => {
                sender.close().await;
                return Err(SendError::Stopped);
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                return if subscribed {
                    Ok(())
                } else {
                    Err(SendError::Transport("closed before subscribing".into()))
                }
            }
            Some(Err(e)) => return Err(SendError::Transport(e.to_string())),
            // Pings are answered by the WebSocket layer on the next read.
            Some(Ok(_)) => continue,
        };
        // Pushed events carry `event`; answers to our requests carry `id` and `status`.
        let value: serde_json::Value = match serde_json::from_str(text.as_str()) {
            Ok(value) => value,
            Err(e) => {
                tracing::warn!("skipping unreadable WebSocket API frame: {e}");
                continue;
            }
        };
        if is_server_shutdown(&value) {
            tracing::info!("the user data stream's server announced a shutdown; reconnecting now");
            sender.close().await;
            return Ok(());
        }
        if value.get("event").is_some() {
            match serde_json::from_value::<UserDataFrame>(value) {
                Ok(UserDataFrame {
                    event: UserDataEvent::StreamTerminated { .. },
                    ..
                }) => return Ok(()),
                Ok(frame) => handler.on_event(frame.event),
                Err(e) => tracing::warn!("skipping unreadable user data event: {e}"),
            }
            continue;
        }
        match serde_json::from_value::<WsApiResponse>(value) {
            Ok(response) => {
                sender.on_response(&response);
                if response.id.as_u64() == Some(subscribe_id) {
                    if let Some(error) = &response.error {
                        return Err(SendError::Transport(format!(
                            "subscription refused ({}): {}",
                            error.code, error.msg
                        )));
                    }
                    subscribed = true;
                    handler.on_subscribed();
                }
            }
            Err(e) => tracing::warn!("skipping unreadable WebSocket API frame: {e}"),
        }
    }
}

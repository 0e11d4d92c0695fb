//! JSON-RPC over WebSocket at `/ws`, with `eth_subscribe("newHeads")` / `eth_unsubscribe`.
//!
//! One task owns each connection and is its only writer: requests, responses and subscription notifications are
//! multiplexed in one `select!`, so concurrent writes cannot happen by construction (the Go relay miner panicked
//! on those, see lessons.md). Frame and message sizes are bounded by [`super::WsConfig`]; a larger frame or message
//! closes the connection. Subscriptions per connection are bounded too.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::IntervalStream;

use super::Shared;
use super::jsonrpc::{self, RpcError, fake_header};
use super::stats::bump;

/// Live subscriptions of one connection: id → stream of block heights to announce.
type Subscriptions = StreamMap<String, BoxStream<'static, u64>>;

/// `GET /ws`: the upgrade, with the configured size limits.
pub(crate) async fn upgrade(State(shared): State<Arc<Shared>>, ws: WebSocketUpgrade) -> Response {
    let limits = shared.config.ws;
    ws.max_frame_size(limits.max_frame_bytes)
        .max_message_size(limits.max_message_bytes)
        .on_upgrade(move |socket| session(shared, socket))
}

/// One connection, until the peer closes, an error or a limit ends it, or the server shuts down.
async fn session(shared: Arc<Shared>, mut socket: WebSocket) {
    bump(&shared.counters.ws_connections);
    let mut shutdown = shared.shutdown_signal();
    let mut subs = Subscriptions::new();
    let mut next_id = 0u64;
    loop {
        let out = tokio::select! {
            _ = shutdown.recv() => {
                let bye = Message::Close(Some(CloseFrame {
                    code: close_code::AWAY,
                    reason: "server shutting down".into(),
                }));
                let _ = socket.send(bye).await;
                break;
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(text))) => {
                    handle_message(&shared, &mut subs, &mut next_id, text.as_bytes()).await
                }
                Some(Ok(Message::Binary(bytes))) => {
                    handle_message(&shared, &mut subs, &mut next_id, &bytes).await
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
            },
            Some((id, height)) = subs.next(), if !subs.is_empty() => {
                bump(&shared.counters.ws_notifications);
                Some(notification(&id, height))
            }
        };
        if let Some(msg) = out
            && socket.send(msg).await.is_err()
        {
            break;
        }
    }
}

/// Handles one data message: a JSON-RPC call or batch, with subscriptions added to the built-in methods.
async fn handle_message(shared: &Shared, subs: &mut Subscriptions, next_id: &mut u64, body: &[u8]) -> Option<Message> {
    bump(&shared.counters.ws_messages);
    let delay = shared.config.delay.sample();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut hook = |method: &str, params: &Value| match method {
        "eth_subscribe" => Some(subscribe(shared, subs, next_id, params)),
        "eth_unsubscribe" => Some(unsubscribe(subs, params)),
        _ => None,
    };
    let handled = jsonrpc::handle_payload(shared, body, &mut hook);
    handled.reply.map(|reply| Message::text(reply.to_string()))
}

/// `eth_subscribe(["newHeads"])`: a new subscription announcing heights head+1, head+2, ... one per interval.
fn subscribe(shared: &Shared, subs: &mut Subscriptions, next_id: &mut u64, params: &Value) -> Result<Value, RpcError> {
    let kind = params.as_array().and_then(|a| a.first()).and_then(Value::as_str);
    if kind != Some("newHeads") {
        return Err(RpcError::new(
            RpcError::INVALID_PARAMS,
            "only [\"newHeads\"] subscriptions are supported",
        ));
    }
    let max = shared.config.ws.max_subscriptions;
    if subs.len() >= max {
        return Err(RpcError::new(
            RpcError::SERVER_ERROR,
            format!("at most {max} subscriptions per connection"),
        ));
    }
    *next_id = next_id.wrapping_add(1);
    let id = format!("{:#034x}", *next_id);
    let interval = shared.config.ws.new_heads_interval;
    let mut timer = tokio::time::interval_at(Instant::now() + interval, interval);
    timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let first = shared.config.head_block.saturating_add(1);
    let heights = IntervalStream::new(timer)
        .enumerate()
        .map(move |(i, _)| first.saturating_add(u64::try_from(i).unwrap_or(u64::MAX)))
        .boxed();
    subs.insert(id.clone(), heights);
    Ok(Value::String(id))
}

/// `eth_unsubscribe([id])`: `true` when the subscription existed.
fn unsubscribe(subs: &mut Subscriptions, params: &Value) -> Result<Value, RpcError> {
    let id = params
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| RpcError::new(RpcError::INVALID_PARAMS, "missing subscription id"))?;
    Ok(Value::Bool(subs.remove(id).is_some()))
}

/// The `eth_subscription` notification for one new head.
fn notification(id: &str, height: u64) -> Message {
    let n = json!({
        "jsonrpc": "2.0",
        "method": "eth_subscription",
        "params": {"subscription": id, "result": fake_header(height)},
    });
    Message::text(n.to_string())
}

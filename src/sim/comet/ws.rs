//! `/websocket`: JSON-RPC over a websocket, with `subscribe`/`unsubscribe`/`unsubscribe_all` for
//! `tm.event='NewBlock'` and every other method answered like over HTTP. One task per connection owns the
//! socket, so there is exactly one writer (lessons.md: concurrent writes panicked in the Go fleet).

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::{AppState, RpcError, handle_request, render, response};
use crate::chain::comet::BlockInfo;
use crate::chain::comet::wire::NEW_BLOCK_QUERY;

pub(super) async fn upgrade(State(st): State<AppState>, ws: WebSocketUpgrade) -> Response {
    if !*st.ws_enabled.borrow() || *st.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "websocket disabled").into_response();
    }
    let max = st.config.max_ws_message_bytes;
    ws.max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(socket, st))
}

/// Resolves once the watched flag equals `want`; never if the sender is gone (the server keeps running).
async fn until(rx: &mut watch::Receiver<bool>, want: bool) {
    if rx.wait_for(|v| *v == want).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The next block of the subscription, or pending forever without one.
async fn next_block(
    sub: &mut Option<(Value, broadcast::Receiver<BlockInfo>)>,
) -> Result<BlockInfo, broadcast::error::RecvError> {
    match sub {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether a query means NewBlock (whitespace around `=` is allowed, as CometBFT's query parser does).
fn is_new_block_query(q: &str) -> bool {
    let compact: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    compact == NEW_BLOCK_QUERY
}

async fn session(mut socket: WebSocket, st: AppState) {
    let mut shutdown = st.shutdown.clone();
    let mut enabled = st.ws_enabled.clone();
    let mut sub: Option<(Value, broadcast::Receiver<BlockInfo>)> = None;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + st.config.ws_ping_interval,
        st.config.ws_ping_interval,
    );
    loop {
        let reply: Option<Value> = tokio::select! {
            () = until(&mut shutdown, true) => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            () = until(&mut enabled, false) => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
                None
            }
            block = next_block(&mut sub) => {
                let id = sub.as_ref().map_or(Value::Null, |(id, _)| id.clone());
                match block {
                    Ok(b) => Some(response(&id, Ok(render::new_block_event(st.backend.as_ref(), &b)))),
                    Err(e) => {
                        // Like CometBFT's pubsub: a subscriber that cannot keep up loses its subscription.
                        sub = None;
                        let reason = match e {
                            broadcast::error::RecvError::Lagged(_) => "client is not pulling messages fast enough",
                            broadcast::error::RecvError::Closed => "CometBFT exited",
                        };
                        Some(response(&id, Err(RpcError::server(format!("subscription was canceled (reason: {reason})")))))
                    }
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => Some(on_request(&st, &mut sub, text.as_str())),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => None,
            },
        };
        if let Some(v) = reply
            && socket.send(Message::Text(v.to_string().into())).await.is_err()
        {
            return;
        }
    }
}

fn on_request(st: &AppState, sub: &mut Option<(Value, broadcast::Receiver<BlockInfo>)>, text: &str) -> Value {
    let req: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return response(&Value::Null, Err(RpcError::parse(e.to_string()))),
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let query = || {
        let p = req.get("params");
        p.and_then(|p| p.get("query").or_else(|| p.get(0)))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    match req.get("method").and_then(Value::as_str) {
        Some("subscribe") => {
            let q = query();
            if !is_new_block_query(&q) {
                return response(
                    &id,
                    Err(RpcError::internal(format!(
                        "simulator only serves {NEW_BLOCK_QUERY}, not {q:?}"
                    ))),
                );
            }
            if sub.is_some() {
                return response(&id, Err(RpcError::internal("already subscribed")));
            }
            // Subscribe before acknowledging, so every block committed after the ack is delivered.
            *sub = Some((id.clone(), st.backend.subscribe_blocks()));
            response(&id, Ok(json!({})))
        }
        Some("unsubscribe") | Some("unsubscribe_all") => {
            if sub.take().is_some() {
                response(&id, Ok(json!({})))
            } else {
                response(&id, Err(RpcError::internal("subscription not found")))
            }
        }
        _ => handle_request(st.backend.as_ref(), &req),
    }
}

//! A backend that answers only when the test releases it (`relayer`, `relayer_guards`, `miner_process`), so a
//! relay can be held in flight while the chain moves: the test decides what the relayer has seen by the time
//! the backend answers, instead of racing a fixed backend delay.

use std::sync::Arc;

use super::serve;

/// The gate's two sides: the test waits on `arrived` and hands out `release` permits.
#[derive(Clone)]
pub struct Gate {
    /// Notified when a request reached the backend.
    pub arrived: Arc<tokio::sync::Notify>,
    /// One permit per request allowed to answer.
    pub release: Arc<tokio::sync::Semaphore>,
}

impl Gate {
    pub fn new() -> Self {
        Self {
            arrived: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }

    /// Serves the gated backend on a free 127.0.0.1 port: every request is answered with one JSON-RPC result
    /// once a permit is released for it. Returns its `http://` URL.
    pub async fn spawn(&self) -> String {
        let gate = self.clone();
        let router = axum::Router::new().fallback(move || {
            let gate = gate.clone();
            async move {
                gate.arrived.notify_one();
                gate.release.acquire().await.unwrap().forget();
                r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#
            }
        });
        serve(router).await
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

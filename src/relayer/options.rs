//! The relayer's options: what a `Config` says about batching, durability, metering and limits, and the simple
//! per-service route `relay-miner localnet` uses. Plain data, read once when the relayer is built.

use std::time::Duration;

use super::BatchSettings;
use crate::config::{Config, FailBehavior};

/// A simple route (one backend URL per service; what `relay-miner localnet` uses with [`Relayer::new`](super::Relayer::new)).
#[derive(Debug, Clone)]
pub struct ServiceRoute {
    /// Backend base URL (`http://host:port`).
    pub backend_url: String,
    /// Backend request timeout.
    pub timeout: Duration,
    /// Request and response body limit.
    pub max_body_bytes: usize,
}

/// Relayer-wide behaviour not tied to one service.
#[derive(Debug, Clone)]
pub struct RelayerOptions {
    /// Relay log batching (`relay_log.max_batch_delay_ms`, `relay_log.max_batch_relays`).
    pub batch: BatchSettings,
    /// Answer only once the relay's batch is durable (`relay_log.durable_ack`).
    pub durable_ack: bool,
    /// Relay metering (`relay_meter.*`); `None` disables it.
    pub meter: Option<MeterOptions>,
    /// Time a client has to send a request's body (`relay_server.body_read_timeout_seconds`).
    pub body_read_timeout: Duration,
    /// Request-body bytes buffered at once by all relays (`relay_server.max_body_bytes_in_flight`); `None` = no
    /// such limit.
    pub max_body_bytes_in_flight: Option<usize>,
    /// How long a relay waits for body bytes to be released (`relay_server.body_budget_wait_ms`).
    pub body_budget_wait: Duration,
    /// Blocks after a session's claim window opens during which its relays are still appended
    /// (`transaction.claim_delay_blocks`: the miner sends the claim no earlier), never past
    /// `claim_close − submission_buffer_blocks` (the miner sends it then at the latest).
    pub claim_delay_blocks: i64,
    /// `transaction.submission_buffer_blocks`.
    pub submission_buffer_blocks: i64,
    /// The largest relay a proof of which fits a tx (`transaction.max_tx_bytes` less the proof overhead,
    /// [`crate::smst::max_provable_relay_bytes`]); a request that makes a larger one is refused before the
    /// backend (`request_too_large`). `None`: no limit.
    pub max_mined_relay_bytes: Option<usize>,
    /// WebSocket relay connections open at once at most (`relay_server.max_connections`: an upgraded connection
    /// leaves the relay server's count, module `ws`); beyond, an upgrade is refused as `overloaded` (503).
    pub max_websocket_connections: usize,
}

impl Default for RelayerOptions {
    /// Durable ack, 5 ms / 512-relay batches, no meter, 30 s for a request body, 1 GiB of request bodies in flight
    /// with a 100 ms wait.
    fn default() -> Self {
        Self {
            batch: BatchSettings {
                max_delay: Duration::from_millis(5),
                max_relays: 512,
            },
            durable_ack: true,
            meter: None,
            body_read_timeout: Duration::from_secs(30),
            max_body_bytes_in_flight: Some(1 << 30),
            body_budget_wait: Duration::from_millis(100),
            claim_delay_blocks: 0,
            submission_buffer_blocks: 1,
            max_websocket_connections: 10_000,
            max_mined_relay_bytes: None,
        }
    }
}

/// Relay meter settings.
#[derive(Debug, Clone, Copy)]
pub struct MeterOptions {
    /// What to do when the meter's storage fails.
    pub fail_behavior: FailBehavior,
    /// TTL of the meter keys in storage.
    pub cache_ttl: Duration,
    /// Sync period with storage.
    pub sync_interval: Duration,
}

impl RelayerOptions {
    /// The options of `config` (`relay_log.*`, `relay_meter.*`, `relay_server.body_read_timeout_seconds`).
    pub fn from_config(config: &Config) -> Self {
        Self {
            batch: BatchSettings {
                max_delay: Duration::from_millis(config.relay_log.max_batch_delay_ms),
                max_relays: config.relay_log.max_batch_relays.max(1),
            },
            durable_ack: config.relay_log.durable_ack,
            meter: config.relay_meter.enabled.then(|| MeterOptions {
                fail_behavior: config.relay_meter.fail_behavior,
                cache_ttl: Duration::from_secs(config.relay_meter.cache_ttl.max(1)),
                sync_interval: Duration::from_millis(config.relay_meter.sync_interval_ms.max(1)),
            }),
            body_read_timeout: Duration::from_secs(config.relay_server.body_read_timeout_seconds.max(1)),
            max_body_bytes_in_flight: (config.relay_server.max_body_bytes_in_flight > 0)
                .then(|| usize::try_from(config.relay_server.max_body_bytes_in_flight).unwrap_or(usize::MAX)),
            body_budget_wait: Duration::from_millis(config.relay_server.body_budget_wait_ms),
            claim_delay_blocks: i64::try_from(config.transaction.claim_delay_blocks).unwrap_or(0),
            submission_buffer_blocks: i64::try_from(config.transaction.submission_buffer_blocks).unwrap_or(0),
            max_mined_relay_bytes: Some(crate::smst::max_provable_relay_bytes(
                usize::try_from(config.transaction.max_tx_bytes).unwrap_or(usize::MAX),
            )),
            max_websocket_connections: config.relay_server.max_connections.max(1),
        }
    }
}

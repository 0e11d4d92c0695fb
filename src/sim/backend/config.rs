//! Configuration of the demo backend: what it listens on, how slow and how faulty it is, and the bounds that keep
//! one misbehaving client from exhausting it.
//!
//! The config is built in code (tests, benches, `relay-miner localnet`), checked once by [`BackendConfig::validate`]
//! when a [`super::DemoBackend`] is created, and never re-checked on the hot path.

use std::net::{Ipv4Addr, SocketAddr};
use std::num::NonZeroU64;
use std::time::Duration;

use rand::Rng;

use super::BackendError;

/// Largest `big` response a client may ask for with an explicit size parameter (64 MiB): a demo backend must not be
/// turned into a memory bomb by one request.
pub const MAX_BIG_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Everything the demo backend can be told. `Default` gives a fast, fault-free backend on `127.0.0.1:0`.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Address [`super::DemoBackend::spawn`] binds; [`super::serve`] takes an already bound listener instead.
    pub listen: SocketAddr,
    /// Latency added to every HTTP request (and every WebSocket request message) before it is answered.
    pub delay: DelayConfig,
    /// Injected HTTP 500 responses and dropped connections.
    pub faults: FaultConfig,
    /// Size in bytes of the string the JSON-RPC `big` method returns when called without a size parameter.
    pub big_response_bytes: usize,
    /// Chain id answered by `eth_chainId` and `/v1/status`.
    pub chain_id: u64,
    /// Height of the fake chain's head: `eth_blockNumber`, the `latest` tag, and the last block that exists.
    pub head_block: u64,
    /// WebSocket limits and the `newHeads` cadence.
    pub ws: WsConfig,
    /// SSE, NDJSON and gRPC server-streaming defaults and bounds.
    pub streams: StreamConfig,
    /// Connections served at once; further connections wait in the listen backlog (mini-redis style semaphore).
    pub max_connections: usize,
    /// Largest request body accepted (JSON-RPC, REST echo, gRPC message).
    pub max_body_bytes: usize,
    /// Largest JSON-RPC batch accepted; a larger batch is answered with one `-32600` error.
    pub max_batch_len: usize,
    /// How long a graceful shutdown waits for open connections and streams before aborting them.
    pub shutdown_grace: Duration,
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            delay: DelayConfig::default(),
            faults: FaultConfig::default(),
            big_response_bytes: 64 * 1024,
            chain_id: 1,
            head_block: 0x1000,
            ws: WsConfig::default(),
            streams: StreamConfig::default(),
            max_connections: 1024,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch_len: 100,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl BackendConfig {
    /// Checks every bound once, naming the offending field. Called by [`super::DemoBackend::new`].
    pub fn validate(&self) -> Result<(), BackendError> {
        fn bad(field: &'static str, reason: impl Into<String>) -> BackendError {
            BackendError::InvalidConfig {
                field,
                reason: reason.into(),
            }
        }
        self.faults.http_500.validate("faults.http_500")?;
        self.faults.drop_connection.validate("faults.drop_connection")?;
        if self.big_response_bytes > MAX_BIG_RESPONSE_BYTES {
            return Err(bad(
                "big_response_bytes",
                format!("must be at most {MAX_BIG_RESPONSE_BYTES}"),
            ));
        }
        if self.ws.new_heads_interval.is_zero() {
            return Err(bad("ws.new_heads_interval", "must be greater than zero"));
        }
        if self.ws.max_frame_bytes == 0 || self.ws.max_frame_bytes > self.ws.max_message_bytes {
            return Err(bad(
                "ws.max_frame_bytes",
                "must be greater than zero and at most ws.max_message_bytes",
            ));
        }
        if self.ws.max_subscriptions == 0 {
            return Err(bad("ws.max_subscriptions", "must be greater than zero"));
        }
        if self.streams.events > self.streams.max_events {
            return Err(bad("streams.events", "must be at most streams.max_events"));
        }
        if self.max_connections == 0 {
            return Err(bad("max_connections", "must be greater than zero"));
        }
        if self.max_body_bytes == 0 {
            return Err(bad("max_body_bytes", "must be greater than zero"));
        }
        if self.max_batch_len == 0 {
            return Err(bad("max_batch_len", "must be greater than zero"));
        }
        Ok(())
    }
}

/// Latency injection: every answer waits `fixed` plus a uniformly random extra in `[0, jitter]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DelayConfig {
    /// Minimum added latency.
    pub fixed: Duration,
    /// Upper bound of the random extra latency on top of `fixed`.
    pub jitter: Duration,
}

impl DelayConfig {
    /// One delay drawn from `[fixed, fixed + jitter]`.
    pub fn sample(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.fixed;
        }
        let max = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        let extra = rand::rng().random_range(0..=max);
        self.fixed.saturating_add(Duration::from_nanos(extra))
    }
}

/// When a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Injection {
    /// Never.
    #[default]
    Never,
    /// On the N-th, 2N-th, 3N-th, ... HTTP request the backend receives (1-based, counted across all connections
    /// and kinds), so a test sending requests one after another knows exactly which ones fail.
    EveryNth(NonZeroU64),
    /// Independently for each request with this probability in `[0, 1]`.
    Probability(f64),
}

impl Injection {
    /// Whether the fault fires for the request with this 1-based ordinal.
    pub fn fires(&self, ordinal: u64) -> bool {
        match *self {
            Injection::Never => false,
            Injection::EveryNth(n) => ordinal.is_multiple_of(n.get()),
            Injection::Probability(p) => p > 0.0 && rand::rng().random::<f64>() < p,
        }
    }

    fn validate(&self, field: &'static str) -> Result<(), BackendError> {
        match *self {
            Injection::Probability(p) if !(0.0..=1.0).contains(&p) => Err(BackendError::InvalidConfig {
                field,
                reason: format!("probability {p} is not within [0, 1]"),
            }),
            _ => Ok(()),
        }
    }
}

/// Error injection applied to HTTP requests (JSON-RPC, REST, streams, gRPC and WebSocket upgrades alike).
/// A drop wins over a 500 when both fire for the same request.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FaultConfig {
    /// Answer `500 Internal Server Error` with a small JSON body instead of serving the request.
    pub http_500: Injection,
    /// Close the connection without answering (HTTP/1.1) or reset the stream (HTTP/2).
    pub drop_connection: Injection,
}

/// What the fault injector decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Serve normally.
    None,
    /// Answer 500.
    Error500,
    /// Drop the connection.
    Drop,
}

impl FaultConfig {
    /// The fault for the request with this 1-based ordinal.
    pub(crate) fn decide(&self, ordinal: u64) -> Fault {
        if self.drop_connection.fires(ordinal) {
            Fault::Drop
        } else if self.http_500.fires(ordinal) {
            Fault::Error500
        } else {
            Fault::None
        }
    }
}

/// WebSocket settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsConfig {
    /// Time between two `newHeads` notifications of one subscription; the first comes one interval after
    /// `eth_subscribe`.
    pub new_heads_interval: Duration,
    /// Largest accepted frame; a larger one closes the connection.
    pub max_frame_bytes: usize,
    /// Largest accepted (reassembled) message; a larger one closes the connection.
    pub max_message_bytes: usize,
    /// Subscriptions one connection may hold at once.
    pub max_subscriptions: usize,
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            new_heads_interval: Duration::from_secs(1),
            max_frame_bytes: 1024 * 1024,
            max_message_bytes: 4 * 1024 * 1024,
            max_subscriptions: 16,
        }
    }
}

/// Defaults and bounds of the streaming endpoints (`/sse`, `/ndjson`, gRPC `EchoStream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Events in a stream when the client does not ask for a count.
    pub events: u64,
    /// Time before each event when the client does not ask for one; zero sends them back to back.
    pub interval: Duration,
    /// Largest count a client may ask for.
    pub max_events: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            events: 10,
            interval: Duration::from_millis(100),
            max_events: 10_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        BackendConfig::default().validate().unwrap();
    }

    /// The field a default config with one change is rejected for.
    fn rejected_field(change: impl FnOnce(&mut BackendConfig)) -> Option<&'static str> {
        let mut c = BackendConfig::default();
        change(&mut c);
        match c.validate() {
            Err(BackendError::InvalidConfig { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn invalid_fields_are_named() {
        type Change = fn(&mut BackendConfig);
        let cases: [(&str, Change); 8] = [
            ("faults.http_500", |c| c.faults.http_500 = Injection::Probability(1.5)),
            ("faults.drop_connection", |c| {
                c.faults.drop_connection = Injection::Probability(f64::NAN)
            }),
            ("ws.new_heads_interval", |c| c.ws.new_heads_interval = Duration::ZERO),
            ("ws.max_frame_bytes", |c| {
                c.ws.max_frame_bytes = c.ws.max_message_bytes + 1
            }),
            ("streams.events", |c| c.streams.events = c.streams.max_events + 1),
            ("max_connections", |c| c.max_connections = 0),
            ("max_batch_len", |c| c.max_batch_len = 0),
            ("big_response_bytes", |c| {
                c.big_response_bytes = MAX_BIG_RESPONSE_BYTES + 1
            }),
        ];
        for (field, change) in cases {
            assert_eq!(rejected_field(change), Some(field));
        }
        assert_eq!(
            rejected_field(|c| c.faults.http_500 = Injection::Probability(1.0)),
            None
        );
    }

    #[test]
    fn every_nth_fires_exactly_on_multiples() {
        let inj = Injection::EveryNth(NonZeroU64::new(3).unwrap());
        let fired: Vec<u64> = (1..=10).filter(|&i| inj.fires(i)).collect();
        assert_eq!(fired, vec![3, 6, 9]);
    }

    #[test]
    fn probability_extremes() {
        assert!((1..=1000).all(|i| Injection::Probability(1.0).fires(i)));
        assert!((1..=1000).all(|i| !Injection::Probability(0.0).fires(i)));
        assert!((1..=1000).all(|i| !Injection::Never.fires(i)));
        let half = (1..=10_000).filter(|&i| Injection::Probability(0.5).fires(i)).count();
        // 10k Bernoulli(0.5) trials: 7 sigma is ±350.
        assert!((4_650..=5_350).contains(&half), "{half}");
    }

    #[test]
    fn drop_wins_over_500() {
        let f = FaultConfig {
            http_500: Injection::EveryNth(NonZeroU64::new(2).unwrap()),
            drop_connection: Injection::EveryNth(NonZeroU64::new(4).unwrap()),
        };
        let d: Vec<Fault> = (1..=4).map(|i| f.decide(i)).collect();
        assert_eq!(d, vec![Fault::None, Fault::Error500, Fault::None, Fault::Drop]);
    }

    #[test]
    fn delay_samples_stay_in_range() {
        let d = DelayConfig {
            fixed: Duration::from_millis(10),
            jitter: Duration::from_millis(5),
        };
        let samples: Vec<Duration> = (0..1000).map(|_| d.sample()).collect();
        assert!(
            samples
                .iter()
                .all(|s| *s >= Duration::from_millis(10) && *s <= Duration::from_millis(15))
        );
        // The jitter is really random: not every sample is the same.
        assert!(samples.iter().any(|s| *s != samples[0]));
        let fixed = DelayConfig {
            fixed: Duration::from_millis(7),
            jitter: Duration::ZERO,
        };
        assert_eq!(fixed.sample(), Duration::from_millis(7));
    }
}

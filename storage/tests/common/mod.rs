//! Support shared by the Redis backend's test files (each a test binary of its own that declares `mod common;`).
//! The server itself comes from `storage::redis::server` (a real `redis-server` child per test); what is here is
//! what those files read from a backend besides its API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use storage::redis::RedisBackend;

/// The Prometheus text of `b`'s collectors, as a node's `/metrics` shows them.
pub fn metrics(b: &RedisBackend) -> String {
    let registry = prometheus::Registry::new();
    for c in b.collectors().unwrap() {
        registry.register(c).unwrap();
    }
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry.gather(), &mut out)
        .unwrap();
    out
}

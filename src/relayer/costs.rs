//! A session's costs, read before the backend is called: compute units per relay (the meter's charge and the
//! trie weight) and the relay mining difficulty target (whether the relay is mined), both at the session start
//! (§4, §5).
//!
//! Both are needed to keep a served relay, so both are read before forwarding: a relay is never served and then
//! thrown away (`chain_unavailable` after the backend worked) because the target could not be read afterwards.
//! They are cached per (service, session start), and a miss is fetched once however many relays wait for it
//! (single flight): the first relays of a new session, or every relay after the chain came back, send one pair of
//! queries, not one each. Every waiter gets that fetch's result, a failure included; a failure is not cached, so the
//! next relay after it tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::chain::cache::TtlCache;
use crate::chain::query::{ChainClient, ChainError};

/// How long costs stay cached (they never change for a session start; the TTL only bounds what is kept).
const COSTS_TTL: Duration = Duration::from_secs(3600);
/// Cached (service, session start) pairs at most.
const COSTS_CAPACITY: usize = 4096;

/// What serving one relay of a session costs and earns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCosts {
    /// Compute units per relay of the service at the session start.
    pub compute_units: u64,
    /// The relay mining difficulty target of the service at the session start (32 bytes).
    pub target: Vec<u8>,
}

type Flight = Arc<OnceCell<Result<Arc<SessionCosts>, ChainError>>>;

/// The cache of [`SessionCosts`] with single-flight misses.
pub struct CostCache {
    cached: TtlCache<(String, i64), Arc<SessionCosts>>,
    /// Fetches in progress (or just finished, until their first caller removes them), by key.
    flights: Mutex<HashMap<(String, i64), Flight>>,
}

impl std::fmt::Debug for CostCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CostCache").finish_non_exhaustive()
    }
}

impl Default for CostCache {
    fn default() -> Self {
        Self {
            cached: TtlCache::new(COSTS_CAPACITY),
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl CostCache {
    fn flights(&self) -> MutexGuard<'_, HashMap<(String, i64), Flight>> {
        self.flights.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The costs of `service` for the session starting at `start` if they are cached (no chain read, nothing
    /// cached or fetched).
    pub fn cached(&self, service: &str, start: i64) -> Option<Arc<SessionCosts>> {
        self.cached.get(&(service.to_string(), start))
    }

    /// The costs of `service` for the session starting at `start` (a validated header's: never a client-chosen
    /// height), from the cache or one fetch shared by every concurrent caller.
    pub async fn get(&self, chain: &ChainClient, service: &str, start: i64) -> Result<Arc<SessionCosts>, ChainError> {
        let key = (service.to_string(), start);
        if let Some(costs) = self.cached.get(&key) {
            return Ok(costs);
        }
        let flight = Arc::clone(self.flights().entry(key.clone()).or_default());
        // The first caller runs the fetch; the others wait for its result. Should the first one be dropped (its
        // gateway went away), a waiting caller takes the fetch over.
        let result = flight
            .get_or_init(|| async {
                let (compute_units, target) = tokio::join!(
                    chain.compute_units_at(service, start),
                    chain.difficulty_target_at(service, start)
                );
                let costs = Arc::new(SessionCosts {
                    compute_units: compute_units?,
                    target: target?,
                });
                self.cached.insert(key.clone(), Arc::clone(&costs), Some(COSTS_TTL));
                Ok(costs)
            })
            .await
            .clone();
        // This flight is over: the next miss (after a failure, or once the entry expired) starts a new one.
        let mut flights = self.flights();
        if flights.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&key);
        }
        result
    }
}

//! Relay metering (issue 6): an application's stake bounds what its sessions can consume from us.
//!
//! Per (session, supplier) the meter tracks consumed compute units (`compute_units_per_relay` at session start per
//! served relay). The budget of one supplier in a session is its share of the app's stake,
//! `stake / suppliers in the session / pending sessions` uPOKT, capped by its share of the app's
//! `per_session_spend_limit`, `limit / suppliers in the session` ([`Budget::from_stake`], [`pending_sessions`]):
//! the stake pays every session not yet settled, and the chain caps a supplier's claim at the smaller of such
//! shares when an app over-consumes (poktroll `getOrInitSessionBudget`). Of that share the chain settles at most
//! `floor(share / (1 + global_inflation_per_claim))`, because the inflation minted for a claim is counted against
//! the app's stake too (poktroll `ensureClaimAmountLimits`, [`crate::protocol::inflation`]); the budget is that
//! settlement cap, in compute units: a relay is refused when
//! `(consumed + cu) × compute_units_to_tokens_multiplier > cap × compute_unit_cost_granularity` (spec §6.4, exact
//! integer arithmetic). poktroll's relayer meter stops at the share itself, so with many pending sessions it
//! serves relays the chain does not pay.
//!
//! The budget is the one of the latest charge: each relay's validation reads the app's current stake and limit,
//! so a top-up mid-session raises it at the next relay and a settlement of an earlier session (which lowers the
//! stake) lowers it. It is still not a guarantee of payment: the chain divides the stake it holds when the
//! session settles, which earlier settlements may lower further, and relayers sharing the session learn each
//! other's consumption only at their syncs (below).
//!
//! State lives in the storage KV (`meter:{session_id}:{supplier}:consumed`, ASCII compute units, TTL
//! `relay_meter.cache_ttl`, set when the key is created and at least an hour so it outlives the session:
//! [`crate::config::MIN_METER_CACHE_TTL_SECS`]; on Redis `ha:cache:meter:…`, deliberately not the Go fleet's `ha:meter:…:consumed`,
//! which counts uPOKT against another budget: see `storage/src/redis/keys.rs`) so several relayers on the same
//! storage share it. The hot path never waits on storage after a session's first relay: each relayer charges a local
//! counter under a short mutex, and a sync task adds the local delta to the shared counter every
//! `sync_interval_ms` (one `increment_once` per active session, never one write per relay) and reads back the
//! total, which includes the other relayers' consumption; the shutdown's drain syncs once more
//! (`Relayer::drain_settlements`), so what was charged since the last round is not lost with the process. A sync
//! whose answer is lost is sent again as the same operation, which storage applies at most once (`sync_once`), so
//! the shared total never counts it twice.
//! Relayers sharing a session may over-serve by at most what the others served within one interval.
//!
//! Charges happen only after validation (lessons: "verify before metering") and are refunded when the relay is
//! not served (backend failure, timeout, oversized answer, relay log failure) or not mined (a 5xx answer), and
//! when abandoned: a [`Charge`] dropped before it was committed (the gateway disconnected and hyper dropped the
//! handler) gives its compute units back, and counts itself in the counter given to
//! [`Charge::count_abandoned_in`] (the relayer's `ha_relayer_relay_meter_consumptions_total{result="refunded"}`,
//! like every other refund).
//! When storage fails, `fail_behavior: open` keeps serving on local counts; `closed` refuses until it recovers.
//! A session's first charge reads its shared total once: when that read fails and the meter fails open, the
//! session starts from its local counts (the read is not retried by every waiting relay in turn) and the sync task
//! brings in the shared total at its next successful round; failing closed, the relay is refused and the next
//! one tries the read again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{OnceCell, watch};

use crate::config::FailBehavior;
use crate::protocol::inflation::InflationPerClaim;

/// Why the meter refused a relay.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum MeterError {
    /// The session's budget is consumed.
    #[error(
        "application stake exhausted for session {session_id}: {consumed} of {limit} compute units consumed, relay costs {cost}"
    )]
    OverServiced {
        /// Session id.
        session_id: String,
        /// Compute units consumed so far (all relayers, as last synced).
        consumed: u64,
        /// Budget in compute units.
        limit: u64,
        /// Cost of the refused relay.
        cost: u64,
    },
    /// Storage failed and `fail_behavior` is `closed`.
    #[error("relay meter storage unavailable: {0}")]
    Unavailable(String),
}

/// Identifies one meter: the budget of one supplier in one session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeterKey {
    /// Session id.
    pub session_id: String,
    /// Supplier operator address.
    pub supplier: String,
}

/// A session's budget as of one charge (the meter keeps the latest one it is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Budget in compute units.
    pub limit_compute_units: u64,
    /// Height from which the entry may be forgotten (claim window open: no more relays are mined).
    pub forget_at_height: i64,
}

/// How many sessions an application's stake pays for at once, as poktroll's relayer meter counts them
/// (`getAppStakePortionPayableToSessionSupplier`): the sessions that ended and still await settlement,
/// `ceil((claim_window_open + claim_window_close + proof_window_open + proof_window_close offsets) /
/// num_blocks_per_session)`, plus the current one. `params` are the shared params at the session end height.
///
/// The chain's settlement floor (`getOrInitSessionBudget`) divides by the first term only, so this share is at
/// most the chain's floor for the same stake (the stake at settlement may be lower: see the module doc), and
/// equals poktroll's relayer. It is not enough on its own: the `+ 1` is worth less than the inflation the chain
/// counts against the floor once more than about `1 / global_inflation_per_claim` sessions are pending (10 at
/// the default 0.1), so [`Budget::from_stake`] also takes the inflation off.
pub fn pending_sessions(params: &crate::protocol::wire::SharedParams) -> u64 {
    let blocks = params.num_blocks_per_session.max(1);
    let until_proof_window_closes = params
        .claim_window_open_offset_blocks
        .saturating_add(params.claim_window_close_offset_blocks)
        .saturating_add(params.proof_window_open_offset_blocks)
        .saturating_add(params.proof_window_close_offset_blocks);
    until_proof_window_closes.div_ceil(blocks).saturating_add(1)
}

impl Budget {
    /// The compute-unit budget of one supplier in one session: `floor(cap × granularity / multiplier)` with
    /// `cap = floor(share / (1 + inflation))` and `share = min(floor(floor(stake / suppliers) / pending_sessions),
    /// floor(spend_limit / suppliers))` uPOKT.
    ///
    /// Rounding follows the chain, each step truncated: the share as poktroll's relayer meter divides it (per
    /// supplier, then per pending session: `getAppStakePortionPayableToSessionSupplier`), capped by the spend
    /// limit's share (`getOrInitSessionBudget`); then the settlement cap of that share with its inflation
    /// (`ensureClaimAmountLimits` → `supplierAppStakeToMaxSettlementAmount`: one truncation of the exact quotient,
    /// [`InflationPerClaim::max_settlement`]); then compute units, truncated, so that the claim of the budget's
    /// compute units (`compute units × multiplier / granularity`, also truncated) is at most the cap and is settled
    /// in full.
    ///
    /// `spend_limit_upokt` is the app's `per_session_spend_limit`: `None` (absent or zero on chain) is no limit,
    /// as the chain's settlement treats a nil or zero limit. `session_suppliers` are the suppliers of the on-chain
    /// session (poktroll's relayer divides by the session param `num_suppliers_per_session`, at least as many;
    /// the chain by the suppliers that claimed, at most as many, so this share is at most the chain's for the
    /// same stake and limit). `inflation` is the tokenomics `global_inflation_per_claim` the relay's validation
    /// read (the chain uses the one of the settling block: a raise before then lowers the cap below this budget).
    #[allow(clippy::too_many_arguments)]
    pub fn from_stake(
        stake_upokt: u64,
        spend_limit_upokt: Option<u64>,
        session_suppliers: usize,
        pending_sessions: u64,
        inflation: InflationPerClaim,
        multiplier: u64,
        granularity: u64,
        forget_at_height: i64,
    ) -> Self {
        let suppliers = session_suppliers.max(1) as u128;
        let stake_share = u128::from(stake_upokt) / suppliers / u128::from(pending_sessions.max(1));
        // The chain caps the per-session budget `min(limit, stake / pending)` and then divides it by the suppliers:
        // `min(limit / suppliers, stake share)` here.
        let share = match spend_limit_upokt {
            Some(limit) if limit > 0 => stake_share.min(u128::from(limit) / suppliers),
            _ => stake_share,
        };
        // The settlement plus the inflation minted for it must fit the share.
        let cap = inflation.max_settlement(share);
        let limit = if multiplier == 0 {
            u128::from(u64::MAX)
        } else {
            cap * u128::from(granularity.max(1)) / u128::from(multiplier)
        };
        Self {
            limit_compute_units: u64::try_from(limit).unwrap_or(u64::MAX),
            forget_at_height,
        }
    }
}

#[derive(Debug)]
struct Counts {
    /// The budget of the latest charge (the app's stake and limit as its validation read them).
    budget: Budget,
    /// Total in storage as last read (includes our flushed deltas and other relayers').
    global: i64,
    /// Charged locally, not yet sent.
    pending: i64,
    /// Sent, not yet acknowledged by storage: the sync under way's delta, and the delta of [`Counts::unconfirmed`]
    /// (counted here until storage confirms it, so the hot path needs no other field).
    inflight: i64,
    /// The increment whose answer was lost (storage may or may not have applied it): the next sync sends it
    /// again, same operation, same delta, before any new delta (see [`sync_once`]).
    unconfirmed: Option<Unconfirmed>,
    /// The last storage operation failed.
    storage_failed: bool,
    /// The sync task removed the entry from the meter (idle past its session's claim window): a charge that took
    /// it from the map before that must not count here, where no sync would see it, and takes a new entry.
    forgotten: bool,
}

/// An increment sent with [`storage::KvStore::increment_once`] whose answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unconfirmed {
    /// The meter's sequence number of the operation.
    seq: u64,
    /// Its compute units.
    delta: i64,
}

#[derive(Debug)]
struct Entry {
    storage_key: String,
    loaded: OnceCell<()>,
    counts: Mutex<Counts>,
}

impl Entry {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A charge that must be settled: [`Charge::commit`] once the relay is served and kept (mined or below the
/// difficulty), [`Charge::refund`] when it is not served or not mined.
///
/// A charge dropped without either is refunded: hyper drops a handler's future when the gateway disconnects
/// (while the backend works, say), and the compute units of a relay nobody received must not stay charged, or
/// later paid relays of the session would be refused as over-serviced.
#[derive(Debug)]
#[must_use = "a charge is refunded when dropped unless committed"]
pub struct Charge {
    entry: Option<Arc<Entry>>,
    cost: u64,
    /// Counts the refund of an abandoned charge (see [`Charge::count_abandoned_in`]).
    abandoned: Option<prometheus::IntCounter>,
}

impl Charge {
    /// A charge of nothing (meter disabled).
    pub fn none() -> Self {
        Self {
            entry: None,
            cost: 0,
            abandoned: None,
        }
    }

    /// Increments `counter` if this charge is abandoned (dropped neither committed nor refunded, and so refunded
    /// by its `Drop`); explicit refunds are the caller's to count.
    pub fn count_abandoned_in(mut self, counter: prometheus::IntCounter) -> Self {
        self.abandoned = Some(counter);
        self
    }

    /// Keeps the compute units charged (the relay was served).
    pub fn commit(mut self) {
        self.entry = None;
    }

    /// Gives the compute units back.
    pub fn refund(mut self) {
        self.give_back();
    }

    /// Gives the compute units back and counts it where an abandoned charge is counted
    /// ([`Charge::count_abandoned_in`]): for a refund decided where the relayer's outcome counters are not at
    /// hand (the relay log appender, for a batch that failed after its handler returned).
    pub fn refund_counted(mut self) {
        if self.entry.is_some()
            && let Some(counter) = &self.abandoned
        {
            counter.inc();
        }
        self.give_back();
    }

    fn give_back(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.counts().pending -= self.cost as i64;
        }
    }
}

impl Drop for Charge {
    /// Refunds a charge neither committed nor refunded (its relay was abandoned, e.g. the client went away).
    fn drop(&mut self) {
        if self.entry.is_some() {
            tracing::debug!(cost = self.cost, "relay meter charge abandoned; refunded");
            if let Some(counter) = &self.abandoned {
                counter.inc();
            }
            self.give_back();
        }
    }
}

/// Outcome counters the relayer exports.
pub trait MeterObserver: Send + Sync {
    /// A storage operation of the meter failed.
    fn storage_error(&self, operation: &'static str);
}

struct Inner {
    kv: Arc<dyn storage::KvStore>,
    fail: FailBehavior,
    ttl: Duration,
    entries: Mutex<HashMap<MeterKey, Arc<Entry>>>,
    observer: Arc<dyn MeterObserver>,
    /// One sync at a time: a sync that finds another in flight waits for it, so when [`RelayMeter::sync`]
    /// returns every delta taken before the call (by it or by the periodic task) is in storage.
    syncing: tokio::sync::Mutex<()>,
    /// This meter's writer id in [`storage::IncrementOnce`]: random per meter, so two relayers (or two runs of
    /// one) never take each other's increments for retries.
    writer: String,
    /// The last [`storage::IncrementOnce::seq`] handed out (increasing across all entries).
    seq: std::sync::atomic::AtomicU64,
    /// Whether the last new delta went out as a plain, at-least-once increment because storage could not apply
    /// it at most once (raft during a rolling upgrade); logs the change once each way.
    at_least_once: std::sync::atomic::AtomicBool,
    /// The sync loop's heartbeat, beaten after every round (idle or not), once [`RelayMeter::with_heartbeat`]
    /// set it: a sync stuck on storage stalls it.
    heartbeat: std::sync::OnceLock<crate::telemetry::Heartbeat>,
}

impl Inner {
    fn entries(&self) -> MutexGuard<'_, HashMap<MeterKey, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The relay meter (cheap to clone).
#[derive(Clone)]
pub struct RelayMeter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RelayMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayMeter")
            .field("fail", &self.inner.fail)
            .finish_non_exhaustive()
    }
}

/// The storage key of a meter: `meter:{session}:{supplier}:consumed`, holding compute units (ASCII integer).
///
/// Deliberately not the Go fleet's `ha:meter:{session}:{supplier}:consumed`: the Go relayer counts uPOKT there
/// (`INCRBY` of `compute_units_per_relay × multiplier / granularity`, truncated per relay, against a budget that
/// also divides by pending sessions or applies a service factor), so one counter shared by both would mix units
/// and budgets and refuse or over-serve wrongly. On Redis this key lands at `{base}:cache:meter:…:consumed`
/// (the KV namespace), apart from Go's. Consequence for a mixed relayer fleet serving the same supplier: each
/// implementation meters only its own relays, so together they can serve up to the sum of both budgets.
pub fn storage_key(key: &MeterKey) -> String {
    format!("meter:{}:{}:consumed", key.session_id, key.supplier)
}

impl RelayMeter {
    /// A meter over `kv`; spawns its sync task (every `sync_interval`; entries are forgotten once `height`
    /// reaches their session's claim window). Must be called inside a tokio runtime.
    pub fn spawn(
        kv: Arc<dyn storage::KvStore>,
        fail: FailBehavior,
        ttl: Duration,
        sync_interval: Duration,
        height: watch::Receiver<i64>,
        observer: Arc<dyn MeterObserver>,
    ) -> Self {
        let inner = Arc::new(Inner {
            kv,
            fail,
            ttl,
            entries: Mutex::new(HashMap::new()),
            observer,
            syncing: tokio::sync::Mutex::new(()),
            writer: format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>()),
            seq: std::sync::atomic::AtomicU64::new(0),
            at_least_once: std::sync::atomic::AtomicBool::new(false),
            heartbeat: std::sync::OnceLock::new(),
        });
        tokio::spawn(sync_loop(
            Arc::downgrade(&inner),
            sync_interval.max(Duration::from_millis(1)),
            height,
        ));
        Self { inner }
    }

    /// Beats `heartbeat` after every round of the sync task (`ha_loop_heartbeat_timestamp_seconds{loop=
    /// "relay_meter_sync"}` in the relayer): a set-after-spawn, so the meter's constructor stays as it is. Only the
    /// first heartbeat given is kept.
    pub fn with_heartbeat(self, heartbeat: crate::telemetry::Heartbeat) -> Self {
        let _ = self.inner.heartbeat.set(heartbeat);
        self
    }

    /// Whether the session is already known to be exhausted (no storage access; used before serving in
    /// optimistic mode, where the charge comes after validation).
    pub fn exhausted(&self, key: &MeterKey, cost: u64) -> bool {
        self.precheck(key, cost).is_err()
    }

    /// [`RelayMeter::exhausted`] with the reason: refuses only what the local view already knows does not fit
    /// (a session never seen passes).
    pub fn precheck(&self, key: &MeterKey, cost: u64) -> Result<(), MeterError> {
        let Some(entry) = self.inner.entries().get(key).cloned() else {
            return Ok(());
        };
        let c = entry.counts();
        let consumed = (c.global + c.pending + c.inflight).max(0) as u64;
        if consumed.saturating_add(cost) > c.budget.limit_compute_units {
            return Err(MeterError::OverServiced {
                session_id: key.session_id.clone(),
                consumed,
                limit: c.budget.limit_compute_units,
                cost,
            });
        }
        if c.storage_failed && self.inner.fail == FailBehavior::Closed {
            return Err(MeterError::Unavailable("the last sync with storage failed".into()));
        }
        Ok(())
    }

    /// Charges `cost` compute units to `key`, or refuses them when they do not fit `budget` (which replaces the
    /// session's budget: the latest validation's stake and limit). The first charge of a session reads its shared
    /// total from storage; later ones are local.
    pub async fn charge(&self, key: &MeterKey, budget: Budget, cost: u64) -> Result<Charge, MeterError> {
        self.charge_or_force(key, budget, cost, false)
            .await
            .map(|(charge, _)| charge)
    }

    /// Charges `cost` compute units to `key` whether they fit `budget` or not, for a relay already served
    /// (optimistic mode): the work is done and mining it costs nothing (the chain caps the claim at settlement,
    /// without penalty). Returns the charge and the refusal [`RelayMeter::charge`] would have given (over budget,
    /// or storage unavailable when failing closed: the charge is then kept locally and synced later).
    pub async fn force(&self, key: &MeterKey, budget: Budget, cost: u64) -> (Charge, Option<MeterError>) {
        match self.charge_or_force(key, budget, cost, true).await {
            Ok(charged) => charged,
            // Not returned when forced.
            Err(e) => (Charge::none(), Some(e)),
        }
    }

    /// [`RelayMeter::charge`] (`force` false: a refusal is the error, nothing charged) and [`RelayMeter::force`]
    /// (always a charge, with the refusal it overrode).
    async fn charge_or_force(
        &self,
        key: &MeterKey,
        budget: Budget,
        cost: u64,
        force: bool,
    ) -> Result<(Charge, Option<MeterError>), MeterError> {
        loop {
            if let Some(charged) = self.charge_entry(key, budget, cost, force).await? {
                return Ok(charged);
            }
        }
    }

    /// One attempt of [`RelayMeter::charge_or_force`] on the entry of `key`: `None` when the sync task forgot that
    /// entry meanwhile (the caller takes the new one).
    async fn charge_entry(
        &self,
        key: &MeterKey,
        budget: Budget,
        cost: u64,
        force: bool,
    ) -> Result<Option<(Charge, Option<MeterError>)>, MeterError> {
        let entry = {
            let mut entries = self.inner.entries();
            Arc::clone(entries.entry(key.clone()).or_insert_with(|| {
                Arc::new(Entry {
                    storage_key: storage_key(key),
                    loaded: OnceCell::new(),
                    counts: Mutex::new(Counts {
                        budget,
                        global: 0,
                        pending: 0,
                        inflight: 0,
                        unconfirmed: None,
                        storage_failed: false,
                        forgotten: false,
                    }),
                })
            }))
        };
        let mut refusal = None;
        if !entry.loaded.initialized() {
            let inner = &self.inner;
            let loaded = entry
                .loaded
                .get_or_try_init(|| async {
                    match read_total(inner.kv.as_ref(), &entry.storage_key).await {
                        Ok(total) => {
                            entry.counts().global = total;
                            Ok(())
                        }
                        Err(e) => {
                            inner.observer.storage_error("get");
                            if inner.fail == FailBehavior::Closed {
                                return Err(e);
                            }
                            // Failing open: the entry counts as loaded, from local counts only, so the relays
                            // waiting on this load (and every later one) go on at once instead of each retrying
                            // the read in turn (100 first relays × a 3 s storage timeout would be 300 s). The
                            // sync task reads the shared total at its next successful round.
                            entry.counts().storage_failed = true;
                            tracing::warn!(
                                error = %e,
                                key = entry.storage_key,
                                "relay meter cannot read its total; failing open on local counts until the next sync"
                            );
                            Ok(())
                        }
                    }
                })
                .await;
            // Forced without its shared total (failing closed, the read failed): the charge is kept locally,
            // synced as a delta, and the next charge reads the total again.
            if let Err(e) = loaded {
                refusal = Some(MeterError::Unavailable(e.to_string()));
            }
        }
        let mut counts = entry.counts();
        if counts.forgotten {
            return Ok(None);
        }
        // The latest budget, up or down (a top-up, or a settlement lowering the stake), under the lock that
        // guards the counts it is compared with.
        counts.budget = budget;
        if refusal.is_none() && counts.storage_failed && self.inner.fail == FailBehavior::Closed {
            refusal = Some(MeterError::Unavailable("the last sync with storage failed".into()));
        }
        let consumed = (counts.global + counts.pending + counts.inflight).max(0) as u64;
        if refusal.is_none() && consumed.saturating_add(cost) > budget.limit_compute_units {
            refusal = Some(MeterError::OverServiced {
                session_id: key.session_id.clone(),
                consumed,
                limit: budget.limit_compute_units,
                cost,
            });
        }
        if let Some(e) = refusal.take_if(|_| !force) {
            return Err(e);
        }
        counts.pending += cost as i64;
        drop(counts);
        let charge = Charge {
            entry: Some(entry),
            cost,
            abandoned: None,
        };
        Ok(Some((charge, refusal)))
    }

    /// Pushes every local delta to storage and reads the shared totals now (the sync task does this
    /// periodically).
    pub async fn sync(&self) {
        sync_once(&self.inner, i64::MIN).await;
    }
}

async fn read_total(kv: &dyn storage::KvStore, key: &str) -> Result<i64, storage::StorageError> {
    Ok(kv
        .get(key)
        .await?
        .and_then(|v| std::str::from_utf8(&v).ok().and_then(|s| s.parse::<i64>().ok()))
        .unwrap_or(0))
}

impl Inner {
    /// A new operation of this meter for [`storage::KvStore::increment_once`].
    fn next_op(&self) -> storage::IncrementOnce {
        storage::IncrementOnce {
            writer: self.writer.clone(),
            seq: self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
        }
    }

    /// Logs when new deltas switch between at-most-once and plain (at-least-once) increments.
    fn note_at_least_once(&self, now: bool, why: Option<&str>) {
        if self.at_least_once.swap(now, std::sync::atomic::Ordering::Relaxed) != now {
            if now {
                tracing::warn!(
                    why,
                    "relay meter storage cannot apply increments at most once: syncing with plain increments (a \
                     sync whose answer is lost may count twice) until it can"
                );
            } else {
                tracing::info!("relay meter syncs with increments applied at most once again");
            }
        }
    }
}

/// The outcome of one entry's sync: the shared total, or the failed operation and its error.
type Synced = Result<i64, (&'static str, storage::StorageError)>;

/// Adds each entry's local delta to its shared counter and reads the total back.
///
/// A delta goes out with [`storage::KvStore::increment_once`] under a new operation of this meter. When that
/// fails, storage may still have applied it (Redis: the script ran, the reply was lost to a timeout or a reset
/// connection; raft: the proposal commits after its answer timed out), so the delta is not put back to be sent
/// as a new delta (which counted it twice in the shared total, and every relayer sharing it refused relays the
/// chain would pay for): it stays in `inflight` as the entry's [`Unconfirmed`] operation, and the next sync sends
/// that same operation again (applied at most once: storage remembers this meter's last applied sequence per
/// counter) before it sends any new delta. Meanwhile the local view counts it, so this relayer never serves
/// past the budget on its account.
///
/// Storage that cannot apply an increment at most once right now (`Conflict`: raft while a member lacks the
/// `kv-once` feature) gets new deltas as plain increments, put back on failure as before (at least once); an
/// unconfirmed operation stays unconfirmed until it can be sent again as itself.
async fn sync_once(inner: &Inner, height: i64) {
    let _one_at_a_time = inner.syncing.lock().await;
    let entries: Vec<(MeterKey, Arc<Entry>)> = inner
        .entries()
        .iter()
        .map(|(k, e)| (k.clone(), Arc::clone(e)))
        .collect();
    for (key, entry) in entries {
        let (retry, delta) = {
            let mut c = entry.counts();
            let d = c.pending;
            c.pending = 0;
            c.inflight += d;
            (c.unconfirmed, d)
        };
        let outcome = sync_entry(inner, &entry, retry, delta).await;
        let mut c = entry.counts();
        match outcome {
            Ok(total) => {
                c.global = total;
                c.storage_failed = false;
            }
            Err((operation, e)) => {
                c.storage_failed = true;
                drop(c);
                inner.observer.storage_error(operation);
                tracing::warn!(error = %e, key = entry.storage_key, "relay meter sync failed");
                continue;
            }
        }
        let forget_at_height = c.budget.forget_at_height;
        drop(c);
        if height >= forget_at_height {
            forget_if_idle(inner, &key, &entry);
        }
    }
}

/// Removes `entry` (of `key`) from the meter when nothing is left to sync. Under the map's lock, so no charge takes
/// it from the map meanwhile; one that took it before sees it `forgotten` and takes a new entry
/// ([`RelayMeter::charge_or_force`]): a charge counted in an entry no sync sees would never reach storage.
fn forget_if_idle(inner: &Inner, key: &MeterKey, entry: &Arc<Entry>) {
    let mut entries = inner.entries();
    if !entries.get(key).is_some_and(|e| Arc::ptr_eq(e, entry)) {
        return;
    }
    let mut c = entry.counts();
    if c.pending == 0 && c.inflight == 0 {
        c.forgotten = true;
        entries.remove(key);
    }
}

/// One entry's sync ([`sync_once`]): the unconfirmed operation `retry` first, then `delta` (already moved from
/// `pending` to `inflight`). Settles `inflight`, `pending` and `unconfirmed` for what it sent.
async fn sync_entry(inner: &Inner, entry: &Entry, retry: Option<Unconfirmed>, delta: i64) -> Synced {
    let kv = inner.kv.as_ref();
    let key = entry.storage_key.as_str();
    let ttl = Some(inner.ttl);
    let mut at_most_once = true;
    let mut total = None;
    if let Some(u) = retry {
        let op = storage::IncrementOnce {
            writer: inner.writer.clone(),
            seq: u.seq,
        };
        match kv.increment_once(key, &op, u.delta, ttl).await {
            Ok(t) => {
                // The applied delta leaves `inflight` as the total that holds it arrives (one critical section:
                // consumption never drops by it in between, which would admit relays past the budget).
                let mut c = entry.counts();
                c.inflight -= u.delta;
                c.global = t;
                c.unconfirmed = None;
                total = Some(t);
            }
            // Not sent (nothing written): it stays unconfirmed; new deltas go out plain meanwhile.
            Err(storage::StorageError::Conflict(why)) => {
                inner.note_at_least_once(true, Some(&why));
                at_most_once = false;
            }
            Err(e) => {
                // Still unconfirmed; the new delta waits behind it (one unconfirmed operation per entry).
                let mut c = entry.counts();
                c.inflight -= delta;
                c.pending += delta;
                return Err(("increment", e));
            }
        }
    }
    if delta == 0 {
        return match total {
            Some(t) => Ok(t),
            None => read_total(kv, key).await.map_err(|e| ("get", e)),
        };
    }
    if at_most_once {
        let op = inner.next_op();
        match kv.increment_once(key, &op, delta, ttl).await {
            Ok(t) => {
                inner.note_at_least_once(false, None);
                let mut c = entry.counts();
                c.inflight -= delta;
                c.global = t;
                return Ok(t);
            }
            Err(storage::StorageError::Conflict(why)) => inner.note_at_least_once(true, Some(&why)),
            Err(e) => {
                // Maybe applied: sent again as this very operation by the next sync.
                entry.counts().unconfirmed = Some(Unconfirmed { seq: op.seq, delta });
                return Err(("increment", e));
            }
        }
    }
    // Plain increment, at least once (storage wrote nothing of the refused operation).
    let result = kv.increment(key, delta, ttl).await;
    let mut c = entry.counts();
    c.inflight -= delta;
    match result {
        Ok(t) => {
            c.global = t;
            Ok(t)
        }
        Err(e) => {
            c.pending += delta;
            Err(("increment", e))
        }
    }
}

async fn sync_loop(inner: Weak<Inner>, every: Duration, height: watch::Receiver<i64>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let h = *height.borrow();
        sync_once(&inner, h).await;
        if let Some(heartbeat) = inner.heartbeat.get() {
            heartbeat.beat();
        }
    }
}

#[cfg(test)]
mod tests;

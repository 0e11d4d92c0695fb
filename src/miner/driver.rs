//! The thin async driver of the [`lifecycle`](super::lifecycle) engine (issue 7): ingests the relay log into one
//! trie per (supplier, session), feeds blocks and chain answers to the engine, executes its commands (claims,
//! proof requirement checks, proofs, on-chain lookups, pruning) and persists every changed session record.
//!
//! Ingest (module `ingest`) is at-least-once and idempotent, and never changes a trie whose claim was built.
//! Only the leader submits: leadership is campaigned through the storage contract and
//! re-checked right before every submission. Every write of the leader is fenced by its leadership token and a
//! refused write ends leadership at once (module `leadership`). Every claim or proof tx is stored in a session
//! record before it leaves, so the next leader finds out what happened to it before it signs another (module
//! `submit::kept`).

mod afford;
pub(super) mod balance;
pub use balance::BalanceMonitor;
mod confirmed;
mod fees;
mod ingest;
mod leadership;
mod lookup;
mod profit;
mod requirement;
pub(super) mod settled;
mod submit;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use k256::ecdsa::SigningKey;
use prost::Message as _;

use super::lifecycle::{Command, Engine, EngineConfig, Event, SessionKey, SessionRecord, TxKind, TxOutcome};
use super::metrics::MinerMetrics;
use crate::chain::query::ChainClient;
use crate::protocol::lottery;
use crate::protocol::session::SessionWindows;
use crate::protocol::wire::{self, SessionHeader};
use crate::smst::Smst;
use crate::smst::hash::sum_count;

/// Counters the driver exports (and `localnet` summarizes).
#[derive(Debug, Default)]
pub struct MinerStats {
    /// Relay-log entries ingested and acknowledged: those put into tries and those acknowledged without being
    /// mined (the three counters below).
    pub relays_ingested: AtomicU64,
    /// Relay-log entries that could not be read (acknowledged and skipped, counted, logged at ERROR).
    pub relays_unreadable: AtomicU64,
    /// Relays too large for their proof to fit a tx (acknowledged and not counted into any trie: module
    /// `ingest`: at most `transaction.max_tx_bytes` less 16 KiB of proof overhead).
    pub relays_too_large: AtomicU64,
    /// Relay-log entries of sessions already pruned (tombstoned): acknowledged, not mined (module `ingest`).
    pub relays_after_prune: AtomicU64,
    /// Claim messages sent.
    pub claims_sent: AtomicU64,
    /// Proof messages sent.
    pub proofs_sent: AtomicU64,
    /// Sessions confirmed claimed on chain.
    pub claims_confirmed: AtomicU64,
    /// Sessions whose proof was required.
    pub proofs_required: AtomicU64,
    /// Sessions lost (real losses only).
    pub sessions_lost: AtomicU64,
    /// Zero-relay sessions discarded.
    pub sessions_discarded: AtomicU64,
    /// Sessions pruned after completion.
    pub sessions_done: AtomicU64,
    /// Writes storage refused because another instance leads (each one ended this miner's leadership).
    pub fenced_writes: AtomicU64,
    /// Live session records in storage, when the leadership was last taken, of suppliers whose key is not in
    /// the keys file (nothing can be submitted for them).
    pub keyless_sessions: AtomicU64,
}

/// [`MinerConfig::ingest_every`] of the embedded store.
pub const INGEST_EVERY_EMBEDDED: Duration = Duration::from_millis(20);

/// Driver settings.
#[derive(Debug, Clone)]
pub struct MinerConfig {
    /// Chain id txs are signed for.
    pub chain_id: String,
    /// Gas price (`0.000001upokt`), raised to the node's minimum when that is higher.
    pub gas_price: String,
    /// The highest gas price paid when the node asks more than `gas_price` (`10upokt`); same denom.
    pub max_gas_price: String,
    /// Simulated gas × this.
    pub gas_adjustment: f64,
    /// Fixed gas limit of every tx, Simulate skipped; 0 = simulate and multiply by `gas_adjustment`.
    pub gas_limit: u64,
    /// Unordered tx TTL after the chain's block time.
    pub tx_ttl_secs: i64,
    /// A supplier's claims or proofs due together are sent in txs of at most this many encoded bytes.
    pub max_tx_bytes: usize,
    /// Send ADR-070 unordered txs; `false` sends ordered txs with tracked sequences.
    pub unordered: bool,
    /// Loop period.
    pub tick: Duration,
    /// Period of the extra ingest rounds run between two ticks while this miner leads and a round took relays
    /// within the last `tick` ([`Miner::run`]); `tick` or longer: none. The embedded store runs them every 20 ms
    /// ([`INGEST_EVERY_EMBEDDED`]): a 100 ms tick at 2,000 relays/s gave the miner ~200 relays to decode and
    /// insert in one burst of several ms of one core's time, and the relayer's threads waited behind it on a
    /// 2-core host (the relayer's added p99 2.2–2.7 ms at a 100 ms tick, 1.8–1.9 ms with 20 ms rounds:
    /// BENCHMARKS.md). Redis and raft keep the tick: a round costs them a round trip per supplier, and on raft a
    /// replicated entry per batch.
    pub ingest_every: Duration,
    /// Consumer name in the relay log. Miners that take over from each other (raft nodes) share it, so a new
    /// leader re-reads what the old one had read but not acknowledged.
    pub consumer: String,
    /// This miner's identity as a leadership candidate (unique per node; stable across restarts, so a restarted
    /// process takes its own lease back at once instead of waiting for it to expire).
    pub instance: String,
    /// Leadership lease TTL (renewed every tick; another instance takes over this long after the leader died
    /// on storages where leadership is a lease, i.e. Redis).
    pub lease: Duration,
    /// Engine tunables.
    pub engine: EngineConfig,
}

struct OpenTrie {
    /// What the session's claim is built from; frozen once that claim was built (module `ingest`).
    trie: Smst<storage::BoxNodeStore>,
    header: SessionHeader,
    /// Relays that reached the miner after the claim was built, kept apart so the claimed trie (which proofs
    /// are built from) never changes and they are still counted once each (opened on first use).
    late: Option<Smst<storage::BoxNodeStore>>,
}

/// The miner of a set of suppliers.
pub struct Miner {
    chain: Arc<ChainClient>,
    storage: storage::Storage,
    keys: crate::keys::Keyring,
    /// Suppliers this miner works for: the keyring's, plus removed ones still finishing sessions they mined
    /// (their relays are money: a supplier removed from the keys file keeps claiming and proving what it served).
    signers: std::collections::BTreeMap<String, SigningKey>,
    config: MinerConfig,
    engine: Engine,
    tries: HashMap<SessionKey, OpenTrie>,
    versions: HashMap<SessionKey, u64>,
    /// Each session's record as last stored (written or restored): a record whose only change since is
    /// `queried_at` is not written again (see [`Miner::persist`]).
    stored: HashMap<SessionKey, SessionRecord>,
    /// Sessions the engine changed whose records could not be written (storage refused or failed): written
    /// again first thing at the next iteration.
    unpersisted: std::collections::BTreeSet<SessionKey>,
    /// Entries the next ingest read of each supplier asks for (sized from its last batch; module `ingest`).
    ingest_read_size: HashMap<String, usize>,
    /// Where the next ingest round starts in the supplier list (it rotates; module `ingest`).
    ingest_rotation: usize,
    /// When an ingest round last took any relay (extra rounds between ticks run for one tick after it).
    ingest_busy_at: Option<std::time::Instant>,
    /// When an ingest round stops reading (the time bound; tests set a batch count).
    ingest_bound: ingest::RoundBound,
    /// The reports (losses, discards, skips, confirmations) of those changes, run once their records are stored.
    pending_reports: Vec<Command>,
    /// Reports taken from `pending_reports` because a write just stored their record (any write of it: it holds
    /// the engine's whole record); run by that write's caller before it returns ([`Miner::run_due_reports`]).
    due_reports: Vec<Command>,
    leader_token: Option<u64>,
    /// `storage` fenced by the current leadership token (`None` when not leading); every write goes through it.
    fenced: Option<storage::Storage>,
    stats: Arc<MinerStats>,
    metrics: Option<MinerMetrics>,
    /// The funds monitor and when it last checked (module `balance`; `None`: off).
    balance_monitor: Option<(balance::BalanceMonitor, Option<std::time::Instant>)>,
    /// The funds check running on its own task, if any (module `balance`).
    funds_check: Option<tokio::task::JoinHandle<()>>,
    sequencers: crate::chain::sequence::Sequencers,
    last_renewal: Option<std::time::Instant>,
    /// Throttles the WARN of failed campaigns/renewals (the loop ticks every ~100 ms).
    leadership_failures: leadership::FailureLog,
    /// Throttles the WARN of relays too large to prove (one per relay otherwise).
    too_large_log: crate::telemetry::LogThrottle,
    /// Reads settlement events (module `lookup`); `None` judges a vanished claim without them.
    comet: Option<crate::chain::comet::CometClient>,
    /// The last settlement block read.
    settlements: lookup::SettlementCache,
    /// Pruned sessions whose settlement is yet to be counted in the settlement metrics (module `settled`).
    settled: settled::SettlementWatch,
    /// Throttles the WARN of relays of pruned sessions (module `ingest`): one line per interval with a count.
    after_prune_log: crate::telemetry::LogThrottle,
    /// The gas price txs are signed at, raised to what the node takes (module `fees`).
    gas_pricing: fees::GasPricing,
    /// Txs whose broadcast got no answer, kept so the next attempt finds out what happened to them before it
    /// signs a new one (module `submit`).
    unknown_txs: submit::UnknownTxs,
    /// The chain's proof params as last read, and the engine height they were read for (module `requirement`).
    proof_params: Option<(i64, wire::ProofParams)>,
    /// The proof params every session decided "no proof required" is known to have been decided or re-checked
    /// with (module `requirement`); `None`: not known (a start, a new leadership, a decision with other params).
    watched_proof_params: Option<wire::ProofParams>,
    /// Every tx that may be in a mempool or a block while its sessions still send, by the session whose record
    /// holds it (stored there before it left, dropped once its outcome is known; module `submit::kept`): what the
    /// next leader or a restarted process restores as txs of unknown outcome.
    kept_txs: submit::KeptTxs,
    /// The hashes of the kept txs each record was last written with.
    stored_txs: HashMap<SessionKey, Vec<String>>,
    /// Records whose kept txs changed since they were written (written with the submission's step).
    kept_changed: std::collections::BTreeSet<SessionKey>,
    /// Claims held back because the balance could not pay their proofs (module `afford`): each counted once.
    held_for_funds: std::collections::BTreeSet<SessionKey>,
    /// Which claims are not sent as not worth their cost (module `profit`; [`Miner::with_claim_policy`]).
    claim_policy: crate::config::SkipUnprofitableClaims,
    /// The first chain height this process handled in its current leadership (`None`: not leading, or no block
    /// handled yet in it): only sessions whose claim window opened after it can be known never to have been
    /// claimed by another instance (module `profit`).
    leading_since: Option<i64>,
    /// How long a leadership confirmation is taken as still holding (module `leadership`,
    /// [`Miner::with_confirmation_reuse`]); zero: every check asks storage.
    confirmation_reuse: Duration,
    /// The last leadership confirmation that succeeded: (when it was requested, the token it confirmed).
    confirmed: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

/// Errors that stop one loop iteration (retried at the next tick).
#[derive(Debug, thiserror::Error)]
pub enum MinerError {
    /// Storage failed.
    #[error("storage: {0}")]
    Storage(#[from] storage::StorageError),
    /// The chain failed.
    #[error("chain: {0}")]
    Chain(#[from] crate::chain::query::ChainError),
    /// The trie failed.
    #[error("trie: {0}")]
    Trie(#[from] crate::smst::SmstError),
    /// A relay-log entry or record does not decode.
    #[error("corrupt entry: {0}")]
    Corrupt(String),
    /// The CometBFT RPC failed (settlement events).
    #[error("cometbft: {0}")]
    Comet(#[from] crate::chain::comet::CometError),
}

const ELECTION: &str = "miner";

/// The storage state of a session record that is a tombstone (module `lifecycle`): listed apart from the live
/// states.
pub const TOMBSTONE_STATE: &str = "pruned";

impl Miner {
    /// A miner for the suppliers of `keys` (hot-reloadable: added suppliers are picked up at the next tick).
    pub fn new(
        chain: Arc<ChainClient>,
        storage: storage::Storage,
        keys: crate::keys::Keyring,
        config: MinerConfig,
    ) -> Self {
        let engine = Engine::new(config.engine);
        let gas_pricing = fees::GasPricing::new(&config.gas_price, &config.max_gas_price);
        Self {
            chain,
            storage,
            keys,
            signers: std::collections::BTreeMap::new(),
            config,
            engine,
            tries: HashMap::new(),
            versions: HashMap::new(),
            stored: HashMap::new(),
            unpersisted: Default::default(),
            ingest_read_size: HashMap::new(),
            ingest_rotation: 0,
            ingest_busy_at: None,
            ingest_bound: ingest::RoundBound::Time,
            pending_reports: Vec::new(),
            due_reports: Vec::new(),
            leader_token: None,
            fenced: None,
            stats: Arc::default(),
            metrics: None,
            balance_monitor: None,
            funds_check: None,
            sequencers: crate::chain::sequence::Sequencers::new(),
            last_renewal: None,
            leadership_failures: leadership::FailureLog::default(),
            too_large_log: crate::telemetry::LogThrottle::new(Duration::from_secs(10)),
            comet: None,
            settlements: lookup::SettlementCache::default(),
            settled: settled::SettlementWatch::default(),
            after_prune_log: crate::telemetry::LogThrottle::new(ingest::AFTER_PRUNE_LOG_EVERY),
            gas_pricing,
            unknown_txs: submit::UnknownTxs::default(),
            proof_params: None,
            watched_proof_params: None,
            kept_txs: submit::KeptTxs::default(),
            stored_txs: HashMap::new(),
            kept_changed: Default::default(),
            held_for_funds: Default::default(),
            claim_policy: crate::config::SkipUnprofitableClaims::Off,
            leading_since: None,
            confirmation_reuse: Duration::ZERO,
            confirmed: std::sync::Mutex::new(None),
        }
    }

    /// Reads claim settlements from `comet`'s `block_results` (module `lookup`): without it, a claim the chain
    /// settled (and so deleted) before the miner saw its proof validated reads as lost.
    pub fn with_settlements_from(mut self, comet: crate::chain::comet::CometClient) -> Self {
        self.comet = Some(comet);
        self
    }

    /// Skips claims not worth their cost by `policy` (`transaction.skip_unprofitable_claims`, module `profit`).
    /// Off unless set: `run` and the localnet set the config's value (default `expected_cost`).
    pub fn with_claim_policy(mut self, policy: crate::config::SkipUnprofitableClaims) -> Self {
        self.claim_policy = policy;
        self
    }

    /// Exports Prometheus metrics through `metrics` (see [`MinerMetrics`]).
    pub fn with_metrics(mut self, metrics: MinerMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<MinerStats> {
        Arc::clone(&self.stats)
    }

    /// Syncs the suppliers worked for with the keyring: a new supplier's persisted sessions are restored (after
    /// a restart, a failover or a hot reload); a removed supplier is dropped only once none of its sessions is
    /// still live.
    pub async fn sync_suppliers(&mut self) -> Result<(), MinerError> {
        let current = self.keys.snapshot();
        for (address, key) in current.iter() {
            if !self.signers.contains_key(address) {
                self.restore_supplier(address).await?;
                tracing::info!(supplier = address, "miner serving supplier");
                self.signers.insert(address.clone(), key.clone());
                // Its relay log has not been read yet: its claims wait for an ingest round (module `ingest`).
                self.engine.set_ingest_caught_up(address, false);
            }
        }
        let removed: Vec<String> = self
            .signers
            .keys()
            .filter(|a| !current.contains_key(*a))
            .cloned()
            .collect();
        for address in removed {
            let live = self
                .engine
                .sessions()
                .filter(|r| r.key.supplier == address && !r.pruned)
                .count();
            if live == 0 {
                tracing::info!(
                    supplier = address,
                    "supplier removed from the keys file; no live sessions left"
                );
                self.signers.remove(&address);
            }
        }
        Ok(())
    }

    /// Restores a supplier's session records, and the txs they hold (module `submit::kept`) as txs of unknown
    /// outcome: a predecessor (or this process before a restart) may have broadcast them, so each is found out
    /// about before a new tx is built for its sessions.
    async fn restore_supplier(&mut self, supplier: &str) -> Result<(), MinerError> {
        for record in self.storage.sessions.list(Some(supplier), None).await? {
            // One record this binary cannot read (a newer binary's, after a rollback; damaged bytes) is skipped,
            // not a failed restore: that failed the reload, so no instance could lead, and every session of every
            // supplier missed its claim and proof.
            let submit::RecordIn {
                record: parsed,
                in_flight_txs,
            } = match serde_json::from_slice(&record.data) {
                Ok(parsed) => parsed,
                Err(e) => {
                    tracing::error!(
                        supplier,
                        session = record.session_id,
                        error = %e,
                        "a session record does not decode (written by a newer version, or damaged): skipped, its \
                         claim and proof are not handled by this process"
                    );
                    continue;
                }
            };
            if self.engine.session(&parsed.key).is_none() && !self.engine.is_tombstoned(&parsed.key) {
                let key = parsed.key.clone();
                self.versions.insert(key.clone(), record.version);
                self.stored.insert(key.clone(), parsed.clone());
                // A tombstone whose settlement was not counted yet (module `settled`).
                self.watch_settlement(&parsed, record.version);
                self.engine.restore(parsed);
                self.stored_txs.insert(key.clone(), submit::hashes(&in_flight_txs));
                for stored in &in_flight_txs {
                    match self.kept_txs.restore(&key, stored) {
                        Some((kind, keys, tx)) => {
                            tracing::info!(
                                supplier,
                                session = key.session_id,
                                ?kind,
                                tx = tx.hash,
                                sessions = keys.len(),
                                "restored a tx that may have been broadcast: found out about before any new one"
                            );
                            self.unknown_txs.insert(kind, &keys, tx);
                        }
                        None => tracing::error!(
                            supplier,
                            session = key.session_id,
                            tx = stored.hash,
                            "a stored tx does not decode or does not match its hash; ignored"
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` resolves; every iteration beats the heartbeat, busy or idle.
    pub async fn run(
        mut self,
        heartbeat: crate::telemetry::Heartbeat,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        if let Err(e) = self.sync_suppliers().await {
            tracing::error!(error = %e, "miner could not restore sessions; retrying every tick");
        }
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(self.config.tick);
        let mut ingest_ticker = tokio::time::interval(self.config.ingest_every);
        ingest_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let extra_rounds = self.config.ingest_every < self.config.tick;
        // A failing step repeats every tick (storage down: 10 lines a second); one line a second says it. The
        // rounds between ticks have their own, so theirs never hide a tick's different error.
        let failures = crate::telemetry::LogThrottle::new(Duration::from_secs(1));
        let round_failures = crate::telemetry::LogThrottle::new(Duration::from_secs(1));
        loop {
            // Extra ingest rounds only while leading and busy (a round took relays within the last tick): an idle
            // or following miner reads nothing between ticks.
            let busy = self.ingest_busy_at.is_some_and(|at| at.elapsed() < self.config.tick);
            let ingest_due = extra_rounds && self.engine.is_leader() && busy;
            tokio::select! {
                // A stop asked while a tick is due wins: the final ingest below runs at once.
                biased;
                _ = &mut shutdown => break,
                _ = ticker.tick() => {}
                _ = ingest_ticker.tick(), if ingest_due => {
                    if let Err(e) = self.ingest_between_ticks().await
                        && let Some(suppressed) = round_failures.admit()
                    {
                        tracing::warn!(
                            error = %e,
                            suppressed,
                            "ingest round between ticks failed; retrying (`suppressed`: failures not logged since \
                             the last line)"
                        );
                    }
                    continue;
                }
            }
            heartbeat.beat();
            if let Err(e) = self.step().await
                && let Some(suppressed) = failures.admit()
            {
                tracing::warn!(
                    error = %e,
                    suppressed,
                    "miner iteration failed; retrying next tick (`suppressed`: failed iterations not logged since \
                     the last line)"
                );
            }
        }
        // Graceful shutdown: ingest what is pending and persist tries and records, including the records a
        // failed iteration could not store (else they wait for the next leader to rebuild them).
        match self.ingest().await {
            Err(e) if e.is_fenced() => self.fenced_out(&e),
            Err(e) => tracing::warn!(error = %e, "final ingest failed; entries stay pending for redelivery"),
            Ok(()) => {}
        }
        if self.engine.is_leader() {
            match self.persist_pending().await {
                Err(e) if e.is_fenced() => self.fenced_out(&e),
                Err(e) => {
                    tracing::warn!(error = %e, "records not stored before stopping; the next leader rebuilds them")
                }
                Ok(()) => {}
            }
        }
        self.resign().await;
    }

    /// Gives the lease up when this miner leads, last thing before it stops, so a standby takes over the claims
    /// and proofs at its next tick instead of when the lease expires (`storage.redis.leader_ttl_seconds`, 30 s by
    /// default, on Redis; 10 s on redb and raft): a rolling restart of the leader's pod no longer leaves the
    /// windows without a submitting miner for that long. Best effort: a failed resign leaves the lease to expire, as after a crash.
    pub(super) async fn resign(&mut self) {
        let Some(token) = self.leader_token else {
            return;
        };
        match self
            .storage
            .leadership
            .resign(ELECTION, &self.config.instance, token)
            .await
        {
            Ok(true) => tracing::info!(instance = self.config.instance, "miner leadership given up on stop"),
            Ok(false) => {}
            Err(e) => tracing::warn!(
                error = %e,
                "giving up the miner leadership on stop failed; a standby takes over once the lease expires"
            ),
        }
        self.leave_leader_mode();
    }

    /// An ingest round between two ticks (`MinerConfig::ingest_every`): a write refused by the fence ends
    /// leadership as in [`Miner::step`]; any other failure holds every supplier's claims until a round catches
    /// up, as a failed ingest of a tick does.
    async fn ingest_between_ticks(&mut self) -> Result<(), MinerError> {
        // As a tick does: the records a failed step left, and their waiting reports, before any ingest (an
        // eventually durable batch carrying such a record must not let its report run as if it were stored).
        match self.persist_pending().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                return Ok(());
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        match self.ingest().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                Ok(())
            }
            Err(e) => {
                self.mark_ingest_behind();
                Err(e)
            }
            Ok(()) => Ok(()),
        }
    }

    /// After a failed ingest: every supplier's log counts as not caught up, so its claims are held until a round
    /// catches up (`Engine::set_ingest_caught_up`).
    fn mark_ingest_behind(&mut self) {
        for supplier in self.signers.keys() {
            self.engine.set_ingest_caught_up(supplier, false);
        }
    }

    /// One iteration: leadership, ingest, new block, commands. A write refused by the fence ends leadership here
    /// (logged at WARN, counted) and is not an error of the iteration.
    pub async fn step(&mut self) -> Result<(), MinerError> {
        match self.step_once().await {
            Err(e) if e.is_fenced() => {
                self.fenced_out(&e);
                Ok(())
            }
            other => other,
        }
    }

    /// One iteration. Its phases are timed (`miner iteration` at DEBUG: milliseconds per phase) so a miner that
    /// falls behind the chain on a loaded host shows where a block's work goes.
    async fn step_once(&mut self) -> Result<(), MinerError> {
        let mut timer = StepTimer::start();
        self.campaign().await;
        timer.lap("campaign");
        if let Some(m) = &self.metrics {
            m.leader_status.set(i64::from(self.engine.is_leader()));
        }
        // Followers stay passive: no ingest, no block handling, no record writes (they would race the leader's
        // records through storage). A follower that becomes leader reloads everything from storage first.
        if !self.engine.is_leader() {
            return Ok(());
        }
        let result = self.lead_once(&mut timer).await;
        timer.report(self.engine.height());
        result
    }

    /// The leader's part of an iteration: ingest, then the block's work when the chain moved.
    async fn lead_once(&mut self, timer: &mut StepTimer) -> Result<(), MinerError> {
        self.persist_pending().await?;
        timer.lap("persist_pending");
        let ingested = self.ingest().await;
        timer.lap("ingest");
        match &ingested {
            Err(e) if e.is_fenced() => return ingested,
            // A failed ingest round (storage refusing the tries' writes, e.g. Redis at maxmemory, or one batch
            // that cannot be read) must not stop the block's work: proofs of claimed sessions need no ingest,
            // and every supplier's claim is held while its log is not caught up (until its last send height,
            // `Engine::set_ingest_caught_up`). Returned once the block is handled.
            Err(e) => {
                tracing::warn!(error = %e, "ingest failed; this block's claims and proofs are still handled");
                self.mark_ingest_behind();
            }
            // After ingest, so a removed supplier's last relays are in its tries before it is considered drained.
            Ok(()) => {
                self.sync_suppliers().await?;
                timer.lap("sync_suppliers");
            }
        }
        // The tip only (node status, a few dozen bytes), not the latest block: this runs every tick, and a block
        // with proofs in it is MBs, returned twice by `GetLatestBlock`. Blocks are read where their contents are
        // needed (the proof seed block's hash, `proof_required` and `submit`).
        let tip = self.chain.tip().await?;
        timer.lap("tip");
        if tip.height > self.engine.height() {
            timer.new_block = true;
            self.leading_since.get_or_insert(tip.height);
            let step = self.engine.handle(Event::NewBlock { height: tip.height });
            let executed = self.execute(step).await;
            timer.lap("execute");
            // Fenced out: another instance leads; nothing more to read or count here.
            if let Err(e) = &executed
                && e.is_fenced()
            {
                return executed;
            }
            // After the block's own work (its claims and proofs come first), and never failing it (module
            // `requirement`).
            self.watch_proof_params().await;
            timer.lap("proof_params");
            // What the chain paid for the sessions settled by now (module `settled`); fails the block only when
            // fenced out, which then comes first (the caller resigns on it).
            let counted = self.count_settlements().await;
            timer.lap("settlements");
            counted?;
            executed?;
            self.observe_gauges(tip.height).await;
            timer.lap("gauges");
            self.monitor_funds();
        }
        ingested
    }

    /// Sessions by state, height, leadership and ingest lag (once per block).
    async fn observe_gauges(&self, height: i64) {
        let Some(m) = &self.metrics else { return };
        m.block_height.set(height);
        m.leader_status.set(i64::from(self.engine.is_leader()));
        let mut by_state: HashMap<&'static str, i64> = HashMap::new();
        for record in self.engine.sessions().filter(|r| !r.pruned) {
            *by_state.entry(record.state.as_str()).or_default() += 1;
        }
        by_state.insert(
            TOMBSTONE_STATE,
            i64::try_from(self.engine.tombstones().count()).unwrap_or(i64::MAX),
        );
        for state in [
            TOMBSTONE_STATE,
            "active",
            "claiming",
            "claimed",
            "proving",
            "proved",
            "settled",
            "discarded",
            "expired",
        ] {
            m.sessions
                .with_label_values(&[state])
                .set(by_state.get(state).copied().unwrap_or(0));
        }
        for supplier in self.signers.keys() {
            if let Ok(backlog) = self.storage.relay_log.backlog(supplier).await {
                let lag = backlog.undelivered.saturating_add(backlog.pending);
                m.consumer_lag
                    .with_label_values(&[supplier])
                    .set(i64::try_from(lag).unwrap_or(i64::MAX));
            }
        }
    }

    /// The uPOKT value of `compute_units` of a session (§6.3.1 at the session start height), for money metrics.
    async fn upokt(&self, service_id: &str, session_end: i64, compute_units: u64) -> Option<u64> {
        use num_traits::ToPrimitive as _;
        let params = self.chain.shared_params_at(session_end).await.ok()?;
        let start = SessionWindows::new(&params, session_end).ok()?.start;
        let start_params = self.chain.shared_params_at(start).await.ok()?;
        let target = self.chain.difficulty_target_at(service_id, start).await.ok()?;
        lottery::claimed_upokt(
            compute_units,
            &target,
            start_params.compute_units_to_tokens_multiplier,
            start_params.compute_unit_cost_granularity,
        )?
        .to_u64()
    }

    /// Counts a loss in the money metrics: relays and compute units exactly, uPOKT when it could be valued
    /// (`None`: a chain query failed; logged, so the uPOKT metric's shortfall is visible).
    fn count_loss(
        &self,
        key: &SessionKey,
        service: &str,
        reason: &str,
        relays: u64,
        compute_units: u64,
        upokt: Option<u64>,
    ) {
        let Some(m) = &self.metrics else {
            return;
        };
        let labels = [key.supplier.as_str(), service, reason];
        m.relays_lost.with_label_values(&labels).inc_by(relays);
        m.compute_units_lost.with_label_values(&labels).inc_by(compute_units);
        match upokt {
            Some(upokt) => m.upokt_lost.with_label_values(&labels).inc_by(upokt),
            None => tracing::error!(
                supplier = key.supplier,
                session = key.session_id,
                reason,
                relays,
                compute_units,
                "cannot value a loss in uPOKT (chain query failed): ha_miner_upokt_lost_total misses it, \
                 ha_miner_relays_lost_total and ha_miner_compute_units_lost_total count it"
            ),
        }
    }

    /// Persists each step's changed records, then runs its commands (which may produce more steps).
    ///
    /// A loss is reported exactly when storage says so (lessons.md: revenue-loss metrics must not lie). The
    /// engine emits a report once, when it changes the session in memory, so:
    /// - a step's reports run right after its records are stored, before any command that can fail (a failed
    ///   chain query would otherwise drop a loss that storage already records, and nobody would report it);
    /// - when the records cannot be stored, the reports wait with them ([`Miner::persist_pending`]); if this
    ///   miner loses the leadership first, they are dropped with the in-memory state, and the next leader, which
    ///   restores the older records and moves them itself, reports the loss once.
    ///
    /// A failed command does not stop the others (only a fenced write does: the miner is deposed); the first
    /// error is returned once everything ran.
    async fn execute(&mut self, step: super::lifecycle::Step) -> Result<(), MinerError> {
        let mut queue = vec![step];
        let mut failed = None;
        while let Some(step) = queue.pop() {
            let persisting = std::time::Instant::now();
            let mut written = Vec::new();
            let persisted = self.persist(&step.changed, &mut written).await;
            tracing::debug!(
                changed = step.changed.len(),
                written = persisted.as_ref().ok(),
                elapsed_ms = persisting.elapsed().as_secs_f64() * 1000.0,
                "miner step records persisted"
            );
            if let Err(e) = persisted {
                let stored: HashSet<SessionKey> = written.into_iter().collect();
                self.defer(queue.into_iter().chain(std::iter::once(step)), &stored)
                    .await;
                return Err(e);
            }
            let (reports, mut commands): (Vec<Command>, Vec<Command>) =
                step.commands.into_iter().partition(Command::is_report);
            // Most urgent first (stable: the engine's order within a kind is kept): a block's claims and proofs
            // must leave before their deadline, a block or two away, while a prune (four storage writes, on raft
            // four commits) can wait. Run in the engine's order, a block's prunes went before its submissions.
            commands.sort_by_key(urgency);
            for command in reports.into_iter().chain(commands) {
                let (running, kind) = (std::time::Instant::now(), command_kind(&command));
                let result = self.run_command(command).await;
                tracing::debug!(
                    command = kind,
                    elapsed_ms = running.elapsed().as_secs_f64() * 1000.0,
                    "miner command ran"
                );
                match result {
                    Ok(Some(next)) => queue.push(next),
                    Ok(None) => {}
                    // Deposed: nothing more may be written or sent by this miner.
                    Err(e @ MinerError::Storage(storage::StorageError::Fenced(_))) => return Err(e),
                    // One session's failed command (a chain query timed out) must not hold back the others'
                    // claims and proofs due at this height: the rest run, and the failed one comes again at the
                    // next block (lookups and requirement checks are asked again, a send no node took is repeated).
                    Err(e) => {
                        tracing::warn!(error = %e, "a miner command failed; the others of this block still run");
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// After a failed record write: the changes of `steps` whose records are not in `stored` wait for
    /// [`Miner::persist_pending`] with their reports (or for any earlier write of their records, which runs those
    /// reports: [`Miner::stored_as`]), their prunes and their claims and proofs are handed back to the engine,
    /// their other commands are dropped (the engine asks for them again at the next block).
    ///
    /// A claim or proof the engine decided is recorded as sent in its session: not run, it is taken back as a
    /// send that never left (`TxOutcome::NotSent`), so it goes at the next block. Left recorded, the session
    /// waited for a re-send two blocks later and spent its one re-send on a tx nobody sent; one more failure
    /// and the claim was lost, or the proof missing (a slash).
    ///
    /// Records in `stored` were written as the engine has them now (all of the steps' changes included), so
    /// their reports run now: were they left waiting and this miner lost the leadership first, the next leader
    /// would restore those records already moved and never report them.
    async fn defer(&mut self, steps: impl IntoIterator<Item = super::lifecycle::Step>, stored: &HashSet<SessionKey>) {
        let mut now = Vec::new();
        // With whether the step's changes may be in `stored` (a step of a take-back is newer than any write).
        let mut steps: Vec<(super::lifecycle::Step, bool)> = steps.into_iter().map(|s| (s, true)).collect();
        while let Some((step, written)) = steps.pop() {
            self.unpersisted
                .extend(step.changed.into_iter().filter(|k| !(written && stored.contains(k))));
            for command in step.commands {
                let (kind, keys) = match command {
                    report if written && report.report_key().is_some_and(|k| stored.contains(k)) => {
                        now.push(report);
                        continue;
                    }
                    report if report.is_report() => {
                        self.pending_reports.push(report);
                        continue;
                    }
                    // Not run: the engine prunes it again at the next block.
                    Command::Prune { key } => {
                        self.engine.prune_failed(&key);
                        continue;
                    }
                    Command::SubmitClaims { keys, .. } => (TxKind::Claim, keys),
                    Command::SubmitProofs { keys, .. } => (TxKind::Proof, keys),
                    _ => continue,
                };
                // Its changed records (the send taken back) wait as the others do, stored or not; its own
                // commands are deferred as well.
                let taken_back = self.engine.handle(Event::TxOutcome {
                    kind,
                    keys,
                    outcome: TxOutcome::NotSent("the step's session records could not be stored".into()),
                });
                steps.push((taken_back, false));
            }
        }
        for report in now {
            // Reports do no IO that can fail (metrics and a log line).
            if let Err(report_error) = self.run_command(report).await {
                tracing::warn!(error = %report_error, "a loss report failed");
            }
        }
    }

    /// Writes the records a failed iteration could not store, then runs their waiting reports.
    async fn persist_pending(&mut self) -> Result<(), MinerError> {
        if self.unpersisted.is_empty() {
            return Ok(());
        }
        let keys: Vec<SessionKey> = self.unpersisted.iter().cloned().collect();
        let mut written = Vec::new();
        let persisted = self.persist(&keys, &mut written).await;
        // Reports of the records stored now run now, even when a later one failed (see `execute`).
        if persisted.is_ok() {
            self.unpersisted.clear();
        } else {
            let stored: HashSet<SessionKey> = written.into_iter().collect();
            self.unpersisted.retain(|k| !stored.contains(k));
        }
        let (now, waiting): (Vec<Command>, Vec<Command>) = std::mem::take(&mut self.pending_reports)
            .into_iter()
            .partition(|r| r.report_key().is_none_or(|k| !self.unpersisted.contains(k)));
        self.pending_reports = waiting;
        for report in now {
            self.run_command(report).await?;
        }
        persisted.map(drop)
    }

    /// Writes the records of `keys`, except those whose only change since they were last stored is
    /// `queried_at`: that field only keeps the engine from asking the chain twice in one block (lookups of sent
    /// claims and proofs run every block), so writing it cost one storage write (on raft, one replicated commit)
    /// per such session per block. A stored `queried_at` that is behind means at most one extra lookup at the
    /// first block after a restart or failover.
    /// Returns how many records were written; each written key is pushed on `written` as it is stored (so a
    /// caller knows which ones were when a later write fails).
    ///
    /// Several records are written as one storage write ([`storage::WriteSets`]; on raft one log entry instead of
    /// one per record), all or none; when one of them conflicts, they are written one by one, which resolves
    /// the conflict. A session whose trie has changes not yet committed (an ingest batch whose write failed)
    /// gets its trie committed first, so a record never counts relays its trie does not hold in storage.
    async fn persist(&mut self, keys: &[SessionKey], written_keys: &mut Vec<SessionKey>) -> Result<usize, MinerError> {
        let persisted = self.write_records(keys, written_keys).await;
        // Even after a failed write: the records written before it are stored.
        self.run_due_reports().await;
        persisted
    }

    /// [`Miner::persist`]'s writes.
    async fn write_records(
        &mut self,
        keys: &[SessionKey],
        written_keys: &mut Vec<SessionKey>,
    ) -> Result<usize, MinerError> {
        let writes = self.record_writes(keys)?;
        if writes.is_empty() {
            return Ok(0);
        }
        self.flush_tries(writes.iter().map(|w| &w.0))?;
        if writes.len() > 1 {
            let set = storage::WriteSet {
                records: writes.iter().map(|(_, _, w)| w.clone()).collect(),
                ..Default::default()
            };
            match self.writer()?.write_sets.write(set).await {
                Ok(outcome) => {
                    let n = writes.len();
                    for ((key, record, _), version) in writes.into_iter().zip(outcome.versions) {
                        self.stored_as(key.clone(), record, version);
                        written_keys.push(key);
                    }
                    return Ok(n);
                }
                // One by one below: a conflicting record is taken over there.
                Err(storage::StorageError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut written = 0;
        for (key, record, w) in writes {
            match self
                .writer()?
                .sessions
                .put(
                    &key.supplier,
                    &key.session_id,
                    &w.state,
                    w.data.clone(),
                    w.expected_version,
                )
                .await
            {
                Ok(version) => {
                    self.stored_as(key.clone(), record, version);
                    written += 1;
                    written_keys.push(key);
                }
                Err(storage::StorageError::Conflict(e)) => {
                    // The stored version moved under us. Deposed leaders cannot write any more (their writes are
                    // fenced), so this is a write that landed before this miner's term began (or a write whose
                    // outcome this miner did not learn). The leader's in-memory record is authoritative: take
                    // the stored version and write once more, fenced like every write, so this overwrite
                    // happens only while this miner still leads.
                    tracing::warn!(
                        session = key.session_id,
                        error = e,
                        "session record written by another instance; overwriting as the leader"
                    );
                    let current = self
                        .writer()?
                        .sessions
                        .get(&key.supplier, &key.session_id)
                        .await?
                        .map(|r| r.version)
                        .unwrap_or(0);
                    let version = self
                        .writer()?
                        .sessions
                        .put(&key.supplier, &key.session_id, record.state.as_str(), w.data, current)
                        .await?;
                    self.stored_as(key.clone(), record, version);
                    written += 1;
                    written_keys.push(key);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// The record writes `keys` need now (see [`Miner::persist`] for which are skipped), with the record each
    /// stores.
    fn record_writes(
        &mut self,
        keys: &[SessionKey],
    ) -> Result<Vec<(SessionKey, SessionRecord, storage::RecordWrite)>, MinerError> {
        let mut writes = Vec::new();
        for key in keys {
            let Some(record) = self.engine.session(key) else {
                continue;
            };
            // The txs its record holds (module `submit::kept`): a change of them alone is written too.
            let held_hashes = self.kept_txs.held_hashes(key, Some(record.state));
            if self.stored_txs.get(key).map_or(&[][..], Vec::as_slice) == held_hashes.as_slice()
                && self
                    .stored
                    .get(key)
                    .is_some_and(|stored| same_but_queried_at(stored, record))
            {
                continue;
            }
            let held = self.kept_txs.held_by(key);
            let data = serde_json::to_vec(&submit::RecordOut {
                record,
                in_flight_txs: &held,
            })
            .map_err(|e| MinerError::Corrupt(e.to_string()))?;
            let write = storage::RecordWrite {
                supplier: key.supplier.clone(),
                session_id: key.session_id.clone(),
                state: record.state.as_str().to_owned(),
                data,
                expected_version: self.versions.get(key).copied().unwrap_or(0),
            };
            writes.push((key.clone(), record.clone(), write));
        }
        Ok(writes)
    }

    /// Notes `record` as stored at `version`.
    fn stored_as(&mut self, key: SessionKey, record: SessionRecord, version: u64) {
        // The txs the record was written with ([`Miner::record_writes`]; `kept_txs` does not change in between).
        let held_hashes = self.kept_txs.held_hashes(&key, Some(record.state));
        self.versions.insert(key.clone(), version);
        self.stored_txs.insert(key.clone(), held_hashes);
        // The engine's whole record is stored: whatever change of it waited for a write ([`Miner::defer`]) is in
        // it, and so are the reports of those changes, which are due now. Left waiting for `persist_pending`,
        // they would be dropped if this miner lost the leadership first, and the next leader, restoring the
        // record already moved, would never report them.
        self.unpersisted.remove(&key);
        let (due, waiting): (Vec<Command>, Vec<Command>) = std::mem::take(&mut self.pending_reports)
            .into_iter()
            .partition(|r| r.report_key() == Some(&key));
        self.pending_reports = waiting;
        self.due_reports.extend(due);
        self.stored.insert(key, record);
    }

    /// Runs the reports whose records a write just stored ([`Miner::stored_as`]). A report writes nothing: it
    /// counts metrics and logs, and may query the chain to value a claim or a loss in uPOKT (a failed query is
    /// logged by the report and leaves that uPOKT uncounted).
    async fn run_due_reports(&mut self) {
        for report in std::mem::take(&mut self.due_reports) {
            if let Err(e) = self.run_command(report).await {
                tracing::warn!(error = %e, "a loss report failed");
            }
        }
    }

    /// Commits the tries (claimed and late) of `keys` that have changes not in storage yet.
    fn flush_tries<'a>(&mut self, keys: impl Iterator<Item = &'a SessionKey>) -> Result<(), MinerError> {
        for key in keys {
            let Some(open) = self.tries.get_mut(key) else {
                continue;
            };
            if !open.trie.has_uncommitted_changes() && !open.late.as_ref().is_some_and(|l| l.has_uncommitted_changes())
            {
                continue;
            }
            tokio::task::block_in_place(|| {
                if open.trie.has_uncommitted_changes() {
                    open.trie.commit()?;
                }
                if let Some(late) = &mut open.late
                    && late.has_uncommitted_changes()
                {
                    late.commit()?;
                }
                Ok::<_, MinerError>(())
            })?;
        }
        Ok(())
    }

    async fn run_command(&mut self, command: Command) -> Result<Option<super::lifecycle::Step>, MinerError> {
        Ok(match command {
            Command::SubmitClaims { supplier, keys } => Some(self.submit(TxKind::Claim, &supplier, keys).await?),
            Command::SubmitProofs { supplier, keys } => Some(self.submit(TxKind::Proof, &supplier, keys).await?),
            Command::LookupOnChain { key } => Some(self.lookup(key).await?),
            Command::CheckProofRequirement { key } => {
                // A proof found required is reported by the engine's step once its record is stored (module
                // `confirmed`).
                let required = self.proof_required(&key).await?;
                Some(self.engine.handle(Event::ProofRequirement { key, required }))
            }
            Command::RecordClaimConfirmed {
                key,
                service_id,
                session_end,
                compute_units,
            } => {
                self.report_claim_confirmed(&key, &service_id, session_end, compute_units)
                    .await;
                None
            }
            Command::RecordClaimSkipped {
                key,
                service_id,
                value_upokt,
            } => {
                self.report_claim_skipped(&key, &service_id, value_upokt);
                None
            }
            Command::RecordProofValidated { key, service_id } => {
                self.report_proof_validated(&key, &service_id);
                None
            }
            Command::RecordProofRequired { key } => {
                self.report_proof_required(&key);
                None
            }
            Command::RecordLoss {
                key,
                reason,
                relays,
                compute_units,
            } => {
                self.stats.sessions_lost.fetch_add(1, AtomicOrdering::Relaxed);
                if self.metrics.is_some() {
                    let (service, end) = self
                        .engine
                        .session(&key)
                        .map(|r| (r.service_id.clone(), r.schedule.session_end))
                        .unwrap_or_default();
                    let upokt = self.upokt(&service, end, compute_units).await;
                    self.count_loss(&key, &service, reason.as_str(), relays, compute_units, upokt);
                    if let Some(m) = &self.metrics {
                        let labels = [key.supplier.as_str(), service.as_str(), reason.as_str()];
                        m.sessions_failed.with_label_values(&labels).inc();
                    }
                }
                tracing::error!(
                    supplier = key.supplier,
                    session = key.session_id,
                    reason = reason.as_str(),
                    relays,
                    compute_units,
                    "session revenue lost"
                );
                None
            }
            Command::RecordUnclaimed {
                key,
                relays,
                compute_units,
                accounted_compute_units,
            } => {
                // The value lost is what the trie is worth minus what the claim pays (each floored as the chain
                // floors it), so the metric adds up exactly to the served relays' value.
                let (service, end) = self
                    .engine
                    .session(&key)
                    .map(|r| (r.service_id.clone(), r.schedule.session_end))
                    .unwrap_or_default();
                if self.metrics.is_some() {
                    let all = self.upokt(&service, end, compute_units).await;
                    let paid = self.upokt(&service, end, accounted_compute_units).await;
                    let upokt = all.zip(paid).map(|(a, p)| a.saturating_sub(p));
                    self.count_loss(
                        &key,
                        &service,
                        "relays_after_claim",
                        relays,
                        compute_units.saturating_sub(accounted_compute_units),
                        upokt,
                    );
                }
                tracing::error!(
                    supplier = key.supplier,
                    session = key.session_id,
                    relays,
                    "served relays reached the trie after the session's claim was built; their revenue is lost"
                );
                None
            }
            Command::RecordDiscard { key } => {
                self.stats.sessions_discarded.fetch_add(1, AtomicOrdering::Relaxed);
                if let Some(m) = &self.metrics {
                    let service = self
                        .engine
                        .session(&key)
                        .map(|r| r.service_id.clone())
                        .unwrap_or_default();
                    m.claims_discarded.with_label_values(&[&key.supplier, &service]).inc();
                }
                tracing::info!(session = key.session_id, "zero-relay session discarded");
                None
            }
            Command::Prune { key } => {
                self.tries.remove(&key);
                let tombstone = match self.delete_session(&key).await {
                    Ok(tombstone) => tombstone,
                    Err(e) => {
                        // Deletes are idempotent: the engine prunes it again at the next block.
                        self.engine.prune_failed(&key);
                        return Err(e);
                    }
                };
                // Its record leaves the engine here; its settlement may still be ahead: its tombstone, stored
                // awaiting it, is watched (module `settled`).
                if let Some((tombstone, version)) = tombstone {
                    self.watch_settlement(&tombstone, version);
                }
                self.engine.bury(&key);
                self.versions.remove(&key);
                self.stored.remove(&key);
                // The record holding its kept txs is gone (module `submit::kept`).
                self.kept_txs.held_hashes(&key, None);
                self.stored_txs.remove(&key);
                self.stats.sessions_done.fetch_add(1, AtomicOrdering::Relaxed);
                None
            }
            Command::Forget { key } => {
                // A failed delete is asked again at the next block (the tombstone stays in the engine until then).
                self.writer()?
                    .sessions
                    .delete(&key.supplier, &key.session_id, None)
                    .await?;
                self.engine.forget(&key);
                self.versions.remove(&key);
                self.stored.remove(&key);
                self.stored_txs.remove(&key);
                None
            }
        })
    }

    /// Deletes a session's tries and relay-log entries and, last, replaces its record by its tombstone (module
    /// `lifecycle`), or deletes the record when the session leaves none: until that write, a restart finds the
    /// record persisted as pruned and prunes again. Returns the tombstone stored and its version.
    async fn delete_session(&self, key: &SessionKey) -> Result<Option<(SessionRecord, u64)>, MinerError> {
        let writer = self.writer()?;
        writer.tries.delete_namespace(&key.supplier, &key.session_id).await?;
        writer
            .tries
            .delete_namespace(&key.supplier, &ingest::late_namespace(&key.session_id))
            .await?;
        writer.relay_log.trim_session(&key.supplier, &key.session_id).await?;
        // Marked awaiting its settlement when that is watched (module `settled`).
        let Some(tombstone) = self.tombstone_of(key) else {
            writer.sessions.delete(&key.supplier, &key.session_id, None).await?;
            return Ok(None);
        };
        let data = serde_json::to_vec(&tombstone).map_err(|e| MinerError::Corrupt(e.to_string()))?;
        // The record was stored (as pruned) by this leader right before: its version is known. Another
        // writer's version (a write that landed before this term began) is overwritten as in `persist`.
        let expected = self.versions.get(key).copied().unwrap_or(0);
        let version = match writer
            .sessions
            .put(&key.supplier, &key.session_id, TOMBSTONE_STATE, data.clone(), expected)
            .await
        {
            Ok(version) => version,
            Err(storage::StorageError::Conflict(_)) => {
                let current = writer
                    .sessions
                    .get(&key.supplier, &key.session_id)
                    .await?
                    .map_or(0, |r| r.version);
                writer
                    .sessions
                    .put(&key.supplier, &key.session_id, TOMBSTONE_STATE, data, current)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some((tombstone, version)))
    }

    /// The session's trie, opened from storage when this process has not touched it yet (after a restart or a
    /// failover the records are restored first; the tries load on demand, digests only).
    async fn open_trie(&mut self, key: &SessionKey) -> Result<&mut OpenTrie, MinerError> {
        if !self.tries.contains_key(key) {
            let record = self
                .engine
                .session(key)
                .ok_or_else(|| MinerError::Corrupt(format!("no session record for {}", key.session_id)))?;
            if record.application_address.is_empty() {
                return Err(MinerError::Corrupt(format!(
                    "session record {} predates header persistence",
                    key.session_id
                )));
            }
            let header = SessionHeader {
                application_address: record.application_address.clone(),
                service_id: record.service_id.clone(),
                session_id: key.session_id.clone(),
                session_start_block_height: record.schedule.session_start,
                session_end_block_height: record.schedule.session_end,
            };
            self.keep_open(key, header).await?;
        }
        self.tries
            .get_mut(key)
            .ok_or_else(|| MinerError::Corrupt(format!("no trie for {}", key.session_id)))
    }

    /// The trie stored in the namespace `(supplier, namespace)`.
    async fn load_trie(&self, supplier: &str, namespace: &str) -> Result<Smst<storage::BoxNodeStore>, MinerError> {
        let store = self.writer()?.tries.open(supplier, namespace).await?;
        Ok(tokio::task::block_in_place(|| Smst::open(store))?)
    }

    /// Loads the session's (claimed) trie and keeps it open with its header.
    async fn keep_open(&mut self, key: &SessionKey, header: SessionHeader) -> Result<(), MinerError> {
        let trie = self.load_trie(&key.supplier, &key.session_id).await?;
        self.tries.insert(
            key.clone(),
            OpenTrie {
                trie,
                header,
                late: None,
            },
        );
        Ok(())
    }

    async fn claim_of(&mut self, key: &SessionKey) -> Result<(wire::Claim, [u8; 48]), MinerError> {
        let open = self.open_trie(key).await?;
        let root = tokio::task::block_in_place(|| open.trie.root());
        let claim = wire::Claim {
            supplier_operator_address: key.supplier.clone(),
            session_header: Some(open.header.clone()),
            root_hash: root.to_vec(),
            proof_validation_status: 0,
        };
        Ok((claim, root))
    }

    async fn proof_required(&mut self, key: &SessionKey) -> Result<bool, MinerError> {
        let (claim, root) = self.claim_of(key).await?;
        let header = claim.session_header.clone().unwrap_or_default();
        let params = self.chain.shared_params_at(header.session_end_block_height).await?;
        let windows = SessionWindows::new(&params, header.session_end_block_height)
            .map_err(|e| MinerError::Corrupt(e.to_string()))?;
        let seed = self.chain.block(windows.proof_seed_height()).await?;
        let start_params = self.chain.shared_params_at(header.session_start_block_height).await?;
        let target = self
            .chain
            .difficulty_target_at(&header.service_id, header.session_start_block_height)
            .await?;
        let (sum, _) = sum_count(&root);
        let claimed = lottery::claimed_upokt(
            sum,
            &target,
            start_params.compute_units_to_tokens_multiplier,
            start_params.compute_unit_cost_granularity,
        )
        .unwrap_or_default();
        let proof_params = self.block_proof_params().await?;
        let reason = lottery::proof_requirement(&claim.encode_to_vec(), &seed.hash, &claimed, &proof_params);
        if reason == lottery::ProofRequirementReason::NotRequired
            && self.watched_proof_params.as_ref() != Some(&proof_params)
        {
            // Decided with params the watch has not seen: the decisions before it are re-checked against these.
            self.watched_proof_params = None;
        }
        Ok(reason != lottery::ProofRequirementReason::NotRequired)
    }
}

/// The order [`Miner::execute`] runs a step's commands in, lowest first: submissions (deadlines), proof
/// requirement checks (a proof follows), lookups (inclusion checks and re-sends), then pruning.
fn urgency(command: &Command) -> u8 {
    match command {
        Command::SubmitClaims { .. } | Command::SubmitProofs { .. } => 0,
        Command::CheckProofRequirement { .. } => 1,
        Command::LookupOnChain { .. } => 2,
        Command::RecordLoss { .. }
        | Command::RecordUnclaimed { .. }
        | Command::RecordDiscard { .. }
        | Command::RecordClaimSkipped { .. }
        | Command::RecordClaimConfirmed { .. }
        | Command::RecordProofValidated { .. }
        | Command::RecordProofRequired { .. } => 3,
        Command::Prune { .. } | Command::Forget { .. } => 4,
    }
}

/// The name of `command`'s kind (the timing log of [`Miner::execute`]).
fn command_kind(command: &Command) -> &'static str {
    match command {
        Command::SubmitClaims { .. } => "submit_claims",
        Command::SubmitProofs { .. } => "submit_proofs",
        Command::LookupOnChain { .. } => "lookup",
        Command::CheckProofRequirement { .. } => "check_proof_requirement",
        Command::RecordLoss { .. } => "record_loss",
        Command::RecordUnclaimed { .. } => "record_unclaimed",
        Command::RecordDiscard { .. } => "record_discard",
        Command::RecordClaimSkipped { .. } => "record_claim_skipped",
        Command::RecordClaimConfirmed { .. } => "record_claim_confirmed",
        Command::RecordProofValidated { .. } => "record_proof_validated",
        Command::RecordProofRequired { .. } => "record_proof_required",
        Command::Prune { .. } => "prune",
        Command::Forget { .. } => "forget",
    }
}

/// Whether `a` and `b` differ in nothing but `queried_at` (see [`Miner::persist`]).
fn same_but_queried_at(a: &SessionRecord, b: &SessionRecord) -> bool {
    SessionRecord {
        queried_at: b.queried_at,
        ..a.clone()
    } == *b
}

/// Times the phases of one miner iteration; reported at DEBUG when the iteration handled a new block or took
/// long (a tick that only polled the tip is not logged), and at WARN, whatever the log level, when it took
/// [`StepTimer::STALLED`] or more: a leader whose iterations take seconds misses windows of a few blocks without
/// any other error (seen on a host starved of CPU, where every send was late), so the operator sees which phase.
struct StepTimer {
    started: std::time::Instant,
    last: std::time::Instant,
    phases: Vec<(&'static str, Duration)>,
    /// The iteration handled a new block.
    new_block: bool,
}

impl StepTimer {
    /// An iteration that took longer than this is reported even without a new block.
    const SLOW: Duration = Duration::from_millis(50);
    /// An iteration that took this long is reported at WARN.
    const STALLED: Duration = Duration::from_secs(2);

    fn start() -> Self {
        let now = std::time::Instant::now();
        Self {
            started: now,
            last: now,
            phases: Vec::new(),
            new_block: false,
        }
    }

    /// Ends the phase `name` now.
    fn lap(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.phases.push((name, now - self.last));
        self.last = now;
    }

    /// The level an iteration of `total` is reported at, if any.
    fn level(&self, total: Duration) -> Option<tracing::Level> {
        if total >= Self::STALLED {
            Some(tracing::Level::WARN)
        } else if self.new_block || total >= Self::SLOW {
            Some(tracing::Level::DEBUG)
        } else {
            None
        }
    }

    fn report(&self, height: i64) {
        let total = self.started.elapsed();
        let level = self.level(total);
        let enabled = match level {
            Some(tracing::Level::WARN) => true,
            Some(_) => tracing::enabled!(tracing::Level::DEBUG),
            None => false,
        };
        if !enabled {
            return;
        }
        let phases = self
            .phases
            .iter()
            .map(|(name, d)| format!("{name}={:.1}", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(" ");
        let total_ms = format!("{:.1}", total.as_secs_f64() * 1000.0);
        if level == Some(tracing::Level::WARN) {
            tracing::warn!(
                height,
                new_block = self.new_block,
                total_ms,
                phases,
                "miner iteration stalled (phases in ms): claims and proofs wait behind it"
            );
        } else {
            tracing::debug!(
                height,
                new_block = self.new_block,
                total_ms,
                phases,
                "miner iteration (phases in ms)"
            );
        }
    }
}

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
//!
//! Where the rest lives: the loop and one iteration in module `iteration`, running the engine's steps in
//! `execute`, storing session records in `persist`, a supplier's records restored from storage in `restore`,
//! the sessions' tries in `tries`, the per-block gauges and the valuing of losses in `observe`.

mod afford;
pub(super) mod balance;
pub use balance::BalanceMonitor;
mod confirmed;
mod execute;
mod fees;
mod ingest;
mod iteration;
mod leadership;
mod lookup;
mod observe;
mod persist;
mod profit;
mod prune;
mod requirement;
mod restore;
pub(super) mod settled;
mod submit;
#[cfg(test)]
mod tests;
mod tries;
pub(super) mod unowned;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use k256::ecdsa::SigningKey;

use super::lifecycle::{Command, Engine, EngineConfig, Event, SessionKey, SessionRecord, TxKind, TxOutcome};
use super::metrics::MinerMetrics;
use crate::chain::query::ChainClient;
use crate::protocol::lottery;
use crate::protocol::session::SessionWindows;
use crate::protocol::wire::{self, SessionHeader};
use crate::smst::Smst;

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
    /// Relays whose relay-log entry carried a `compute_units_per_relay` other than the chain's for their session
    /// (a relayer with a stale cache, another implementation): mined with the chain's value (module `ingest`).
    pub relays_reweighted: AtomicU64,
    /// Relays that reached the miner after their session's claimed trie was frozen (module `ingest`): kept in
    /// the late trie, counted lost as `relays_after_claim` once the claim is confirmed.
    pub relays_late: AtomicU64,
    /// Relays a session's prune trimmed from the relay log that no trie of it held (never ingested: a backlog
    /// through the session's windows), counted lost as `pruned_before_ingest` (module `prune`).
    pub relays_pruned_unread: AtomicU64,
    /// Claim messages sent.
    pub claims_sent: AtomicU64,
    /// Proof messages sent.
    pub proofs_sent: AtomicU64,
    /// Sessions confirmed claimed on chain.
    pub claims_confirmed: AtomicU64,
    /// Sessions whose proof was found required (each time: a session found required again after its params
    /// changed counts again).
    pub proofs_required: AtomicU64,
    /// Of those, the ones the chain then did not require (settled without a proof): proofs owed are
    /// `proofs_required − proofs_not_required_after_all`.
    pub proofs_not_required_after_all: AtomicU64,
    /// Sessions decided "no proof required" whose settlement the chain never told (neither paid nor lost).
    pub settlements_unknown: AtomicU64,
    /// Sessions lost (real losses only).
    pub sessions_lost: AtomicU64,
    /// Zero-relay sessions discarded.
    pub sessions_discarded: AtomicU64,
    /// Sessions pruned after completion.
    pub sessions_done: AtomicU64,
    /// Pieces of the miner loop's work completed (phases, commands, and each supplier or session inside the
    /// phases that go through many, `Miner::progressed`): progress inside an iteration that has not completed
    /// yet, read by the raft watchdog so a slow iteration over many suppliers is not taken for a hung miner.
    pub steps_done: AtomicU64,
    /// Writes storage refused because another instance leads (each one ended this miner's leadership).
    pub fenced_writes: AtomicU64,
    /// Live session records in storage, when the leadership was last taken, of suppliers whose key is not in
    /// the keys file (nothing can be submitted for them).
    pub keyless_sessions: AtomicU64,
    /// The suppliers (operator addresses) of those sessions, as last listed while leading; emptied when the
    /// leadership is lost. On raft the miner watchdog hands the leadership to a node that holds their keys
    /// (`node::miner_watchdog`).
    pub keyless_suppliers: std::sync::Mutex<std::collections::BTreeSet<String>>,
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
    /// The chain's `compute_units_per_relay` of the session's service at its start height, every relay's weight
    /// in both tries (module `ingest`); read once per session, at its first insert in this process.
    compute_units_per_relay: Option<u64>,
}

/// The miner of a set of suppliers.
pub struct Miner {
    chain: Arc<ChainClient>,
    storage: storage::Storage,
    keys: crate::keys::Keyring,
    /// Suppliers this miner works for: the keyring's, plus removed ones still finishing sessions they mined
    /// (their relays are money: a supplier removed from the keys file keeps claiming and proving what it served).
    signers: std::collections::BTreeMap<String, SigningKey>,
    /// Removed suppliers kept in `signers` whose removal was warned about (once per removal: module `restore`).
    removal_warned: std::collections::BTreeSet<String>,
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
    /// When the last renewal (or campaign) of the lease that succeeded was requested: renewed again `lease / 4`
    /// after it, and trusted until `lease − lease / 4` after it when a renewal fails ([`Miner::lease_surely_held`]).
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
    /// This leadership term still owes the listing of the sessions of suppliers without a key (module
    /// `leadership`, `Miner::keyless_sessions`, which restores their tombstones and settlement watches): it failed
    /// at the leadership change and is tried again at each block until it succeeds (`Miner::list_keyless_owed`).
    keyless_listing_owed: bool,
    /// Throttles the WARN of relays of pruned sessions (module `ingest`): one line per interval with a count.
    after_prune_log: crate::telemetry::LogThrottle,
    /// Throttles the WARN of relay-log entries whose compute units per relay are not the chain's (module `ingest`).
    reweighted_log: crate::telemetry::LogThrottle,
    /// Throttles the WARN of relays that reached the miner after their claimed trie was frozen (module `ingest`).
    late_log: crate::telemetry::LogThrottle,
    /// Sessions whose claim the block being handled decided and whose root is not read yet: the freeze read
    /// (module `ingest`, [`Miner::freeze_read`]) still puts their relays into the claimed trie. Empty otherwise.
    freezing: HashSet<SessionKey>,
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
    /// Suppliers a command or record write of the block being handled failed for (module `observe`).
    block_failures: std::collections::BTreeSet<String>,
    /// The last block whose work completed without a failure, by supplier, in this leadership term (module
    /// `observe`: `ha_miner_session_block_processing_lag`).
    work_done_at: HashMap<String, i64>,
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
            removal_warned: std::collections::BTreeSet::new(),
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
            keyless_listing_owed: false,
            after_prune_log: crate::telemetry::LogThrottle::new(ingest::AFTER_PRUNE_LOG_EVERY),
            reweighted_log: crate::telemetry::LogThrottle::new(ingest::AFTER_PRUNE_LOG_EVERY),
            late_log: crate::telemetry::LogThrottle::new(ingest::AFTER_PRUNE_LOG_EVERY),
            freezing: HashSet::new(),
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
            block_failures: Default::default(),
            work_done_at: HashMap::new(),
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
        // Served at 0 from the start, for alerts on its increase.
        metrics.storage_rollbacks.with_label_values(&[self.storage.backend]);
        self.metrics = Some(metrics);
        self
    }

    /// The shared counters.
    pub fn stats(&self) -> Arc<MinerStats> {
        Arc::clone(&self.stats)
    }
}

//! The driver against the chain simulator and the memory backend: a miner whose local leadership view lags
//! (as a raft node's does between ticks) while another instance takes its lease over is stopped by its first
//! fenced write, acknowledges nothing, and the new leader ingests every relay it left.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use sha2::{Digest as _, Sha256};
use std::future::Future;
use std::pin::Pin;
use storage::{Backlog, LeaderInfo, Leadership, MemoryBackend, MinedRelay, StorageError};
use tokio::sync::watch;

use super::{ELECTION, Miner, MinerConfig};
use crate::chain::query::ChainClient;
use crate::keys::{KeyMap, Keyring};
use crate::miner::lifecycle::{SessionKey, SessionRecord};
use crate::protocol::wire::{MinedRelayMessage, SessionHeader};
use crate::sim::chain::genesis::*;
use crate::sim::chain::{SimChain, actor, router};

mod claim_funds;
mod confirmed_once;
mod deferred_submits;
mod fee_refusals;
mod fixed_gas;
mod funds_monitor;
mod held_past_close;
mod inclusion_delay;
mod ingest_between_ticks;
mod ingest_failure;
mod kept_txs;
mod keyless_tombstones;
mod partial_persist;
mod proof_params;
mod proofs_by_value;
mod pruned;
mod redis_threshold;
mod refused_message_alone;
mod rejected_once;
mod removed_supplier;
mod settled;
mod settled_failover;
mod split_on_refusal;
mod step_timer;
mod stop_resigns;
mod tip;
mod undecodable_record;
mod unprofitable;
mod unreadable_trie;
mod waiting_reports;

const LEASE: Duration = Duration::from_secs(60);

pub(super) fn key_hex(label: &str) -> String {
    hex::encode(Sha256::digest(label.as_bytes()))
}

pub(super) fn genesis() -> Genesis {
    Genesis {
        chain_id: "pocket-fence".into(),
        block_time_ms: 50,
        shared_params: GenesisSharedParams::default(),
        proof_params: GenesisProofParams {
            proof_request_probability: 0.0,
            proof_requirement_threshold_upokt: u64::MAX,
            proof_missing_penalty_upokt: 320,
            proof_submission_fee_upokt: 1,
        },
        num_suppliers_per_session: 15,
        services: vec![GenesisService {
            id: "anvil".into(),
            compute_units_per_relay: 10,
            difficulty_target_hex: None,
        }],
        applications: vec![GenesisApplication {
            key_hex: key_hex("app"),
            stake_upokt: 1_000_000,
            services: vec!["anvil".into()],
            delegate_to: vec![0],
        }],
        gateways: vec![GenesisGateway {
            key_hex: key_hex("gateway"),
            stake_upokt: 1_000_000,
        }],
        suppliers: vec![GenesisSupplier {
            key_hex: key_hex("supplier"),
            stake_upokt: 1_000_000,
            balance_upokt: 1_000_000,
            services: vec![GenesisSupplierService {
                service_id: "anvil".into(),
                url: "http://127.0.0.1:1".into(),
            }],
        }],
    }
}

/// Serves `chain`'s gRPC on a free port for the test's runtime and produces 4 blocks: a client of it and the
/// session header of the demo app (`app`, service `anvil`) at the chain's height.
pub(super) async fn serve_grpc(chain: &SimChain) -> (Arc<ChainClient>, SessionHeader) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(chain.clone()).into_axum();
    tokio::spawn(async move { axum::serve(listener, app).await });
    for _ in 0..4 {
        chain.produce_block();
    }
    let client = Arc::new(ChainClient::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap());
    let (_, app_address, _) = actor(&key_hex("app")).unwrap();
    let header = client
        .session(&app_address, "anvil", chain.height())
        .await
        .unwrap()
        .header
        .unwrap();
    (client, header)
}

/// A leadership view that can lag: once frozen, `leader()` keeps answering what it was frozen with (a raft
/// node's applied view between ticks); campaign, renew and resign always reach the storage. Renewals can be
/// held (write-lock `hold`), as a raft commit is while its leader is cut off; `renewals` counts those started.
struct LaggingView {
    inner: Arc<dyn Leadership>,
    frozen: Mutex<Option<Option<LeaderInfo>>>,
    hold: tokio::sync::RwLock<()>,
    renewals: std::sync::atomic::AtomicUsize,
    /// Renewals numbered (from 0) below this one are never held.
    hold_from: std::sync::atomic::AtomicUsize,
}

impl LaggingView {
    fn over(inner: Arc<dyn Leadership>) -> Self {
        Self {
            inner,
            frozen: Mutex::new(None),
            hold: tokio::sync::RwLock::new(()),
            renewals: std::sync::atomic::AtomicUsize::new(0),
            hold_from: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn set(&self, v: Option<Option<LeaderInfo>>) {
        *self.frozen.lock().unwrap() = v;
    }
}

type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

// `Leadership` is an `async_trait` trait; this crate does not depend on `async_trait`, so the impl is written
// in the form the macro expands to.
impl Leadership for LaggingView {
    fn campaign<'s, 'e, 'c, 'a>(
        &'s self,
        election: &'e str,
        candidate: &'c str,
        ttl: Duration,
    ) -> Answer<'a, Option<u64>>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.inner.campaign(election, candidate, ttl)
    }

    fn renew<'s, 'e, 'c, 'a>(
        &'s self,
        election: &'e str,
        candidate: &'c str,
        token: u64,
        ttl: Duration,
    ) -> Answer<'a, bool>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        Box::pin(async move {
            let n = self.renewals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= self.hold_from.load(std::sync::atomic::Ordering::SeqCst) {
                let _held = self.hold.read().await;
                return self.inner.renew(election, candidate, token, ttl).await;
            }
            self.inner.renew(election, candidate, token, ttl).await
        })
    }

    fn resign<'s, 'e, 'c, 'a>(&'s self, election: &'e str, candidate: &'c str, token: u64) -> Answer<'a, bool>
    where
        's: 'a,
        'e: 'a,
        'c: 'a,
        Self: 'a,
    {
        self.inner.resign(election, candidate, token)
    }

    fn leader<'s, 'e, 'a>(&'s self, election: &'e str) -> Answer<'a, Option<LeaderInfo>>
    where
        's: 'a,
        'e: 'a,
        Self: 'a,
    {
        let frozen = self.frozen.lock().unwrap().clone();
        match frozen {
            Some(v) => Box::pin(std::future::ready(Ok(v))),
            None => self.inner.leader(election),
        }
    }

    fn watch<'s, 'e, 'a>(&'s self, election: &'e str) -> Answer<'a, watch::Receiver<Option<LeaderInfo>>>
    where
        's: 'a,
        'e: 'a,
        Self: 'a,
    {
        self.inner.watch(election)
    }
}

pub(super) fn config(instance: &str) -> MinerConfig {
    MinerConfig {
        chain_id: "pocket-fence".into(),
        gas_price: "0.000001upokt".into(),
        max_gas_price: "10upokt".into(),
        gas_adjustment: 1.7,
        gas_limit: 0,
        tx_ttl_secs: 120,
        max_tx_bytes: crate::config::DEFAULT_MAX_TX_BYTES as usize,
        unordered: true,
        tick: Duration::from_millis(10),
        ingest_every: Duration::from_millis(10),
        consumer: "miner".into(),
        instance: instance.into(),
        lease: LEASE,
        // Claims at `claim_open`, as these tests' block counts assume;
        // `a_grace_relay_appended_at_claim_open_is_in_the_claim_sent_after_the_delay` runs the default delay.
        engine: crate::miner::lifecycle::EngineConfig {
            claim_delay_blocks: 0,
            ..Default::default()
        },
    }
}

pub(super) fn relays(supplier: &str, header: &SessionHeader, n: std::ops::Range<u64>) -> Vec<MinedRelay> {
    n.map(|i| {
        let relay_bytes = format!("relay-{i}").into_bytes();
        let relay_hash = Sha256::digest(&relay_bytes).to_vec();
        let message = MinedRelayMessage {
            relay_hash: relay_hash.clone(),
            relay_bytes,
            compute_units_per_relay: 10,
            session_id: header.session_id.clone(),
            session_end_height: header.session_end_block_height,
            supplier_operator_address: supplier.to_owned(),
            service_id: "anvil".into(),
            application_address: header.application_address.clone(),
            arrival_block_height: header.session_start_block_height,
            published_at_unix_nano: 0,
            session_start_height: header.session_start_block_height,
        };
        MinedRelay {
            supplier: supplier.to_owned(),
            session_id: header.session_id.clone(),
            session_end_height: u64::try_from(header.session_end_block_height).unwrap(),
            relay_hash,
            payload: message.encode_to_vec(),
        }
    })
    .collect()
}

/// A simulator chain serving gRPC and CometBFT RPC on loopback (4 blocks in), its client, the supplier's current
/// session and keys.
struct Fixture {
    chain: SimChain,
    client: Arc<ChainClient>,
    /// A client of the chain's CometBFT RPC (settlement events).
    comet: crate::chain::comet::CometClient,
    supplier: String,
    header: SessionHeader,
    keyring: Keyring,
    key: SessionKey,
}

async fn fixture() -> Fixture {
    fixture_on(genesis()).await
}

async fn fixture_on(genesis: Genesis) -> Fixture {
    let chain = SimChain::new(genesis).unwrap();
    let rpc = crate::sim::comet::serve(
        Arc::new(chain.clone()),
        "127.0.0.1:0".parse().unwrap(),
        crate::sim::comet::ServerConfig::default(),
    )
    .await
    .unwrap();
    let comet = crate::chain::comet::CometClient::new(&rpc.url()).unwrap();
    // The server lives as long as the test's runtime.
    std::mem::forget(rpc);
    let (client, header) = serve_grpc(&chain).await;
    let (supplier_key, supplier, _) = actor(&key_hex("supplier")).unwrap();
    let keyring = Keyring::new(KeyMap::from([(supplier.clone(), supplier_key)]));
    let key = SessionKey {
        supplier: supplier.clone(),
        session_id: header.session_id.clone(),
    };
    Fixture {
        chain,
        client,
        comet,
        supplier,
        header,
        keyring,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_out_miner_stops_ingesting_and_the_new_leader_gets_every_relay() {
    let Fixture {
        client,
        supplier,
        header,
        keyring,
        key,
        ..
    } = fixture().await;

    let mem = MemoryBackend::new();
    let plain = mem.storage();
    let view = Arc::new(LaggingView::over(plain.leadership.clone()));
    let mut storage_a = plain.clone();
    storage_a.leadership = view.clone();
    let mut a = Miner::new(client.clone(), storage_a, keyring.clone(), config("a"));
    a.step().await.unwrap();
    assert!(a.engine.is_leader());
    plain.relay_log.append(relays(&supplier, &header, 0..5)).await.unwrap();
    a.step().await.unwrap();
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);
    let token_a = a.leader_token.unwrap();

    // A's view lags: it keeps seeing itself as the leader while its lease ends and B takes it over.
    view.set(Some(Some(LeaderInfo {
        holder: "a".into(),
        token: token_a,
    })));
    assert!(
        plain
            .leadership
            .renew(ELECTION, "a", token_a, Duration::from_millis(1))
            .await
            .unwrap()
    );
    let token_b = storage::suite::poll_until("B takes the lease over", || async {
        plain.leadership.campaign(ELECTION, "b", LEASE).await.unwrap()
    })
    .await;
    assert!(token_b > token_a);
    plain.relay_log.append(relays(&supplier, &header, 5..8)).await.unwrap();

    // A's next iteration: its first write (marking entries delivered) is refused; it leaves leader mode at
    // once, counts it, and neither delivers nor acknowledges anything.
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    assert_eq!(a.leader_token, None);
    assert_eq!(a.stats.fenced_writes.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);
    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        Backlog {
            undelivered: 3,
            pending: 0
        }
    );
    // With a current view it campaigns again and stays out: B holds the lease.
    view.set(None);
    a.step().await.unwrap();
    assert!(!a.engine.is_leader());
    assert_eq!(a.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 5);

    // B, the holder, ingests exactly what A left, on top of A's trie and record: nothing served is lost.
    let mut b = Miner::new(client, plain.clone(), keyring, config("b"));
    b.step().await.unwrap();
    assert!(b.engine.is_leader());
    assert_eq!(b.leader_token, Some(token_b));
    assert_eq!(b.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(b.engine.session(&key).unwrap().relays, 8);
    assert_eq!(plain.relay_log.backlog(&supplier).await.unwrap(), Backlog::default());
}

/// The relay log of a relayer that keeps serving while the miner ingests: every read of new entries appends
/// `per_read` more relays behind it (after the read), as appends land while a batch is being committed.
struct BusyRelayer {
    inner: Arc<dyn storage::RelayLog>,
    supplier: String,
    header: SessionHeader,
    per_read: u64,
    next: Mutex<u64>,
    reads: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl storage::RelayLog for BusyRelayer {
    async fn append(&self, relays: Vec<MinedRelay>) -> Result<Vec<storage::EntryId>, StorageError> {
        self.inner.append(relays).await
    }
    async fn read(&self, supplier: &str, consumer: &str, max: usize) -> Result<Vec<storage::LogEntry>, StorageError> {
        let out = self.inner.read(supplier, consumer, max).await?;
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let from = {
            let mut next = self.next.lock().unwrap();
            *next += self.per_read;
            *next - self.per_read
        };
        let more = relays(&self.supplier, &self.header, from..from + self.per_read);
        self.inner.append(more).await?;
        Ok(out)
    }
    async fn read_pending(
        &self,
        supplier: &str,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<storage::LogEntry>, StorageError> {
        self.inner.read_pending(supplier, consumer, max).await
    }
    async fn claim(
        &self,
        supplier: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<storage::LogEntry>, StorageError> {
        self.inner.claim(supplier, consumer, min_idle, max).await
    }
    async fn ack(&self, supplier: &str, ids: &[storage::EntryId]) -> Result<u64, StorageError> {
        self.inner.ack(supplier, ids).await
    }
    async fn trim_session(&self, supplier: &str, session_id: &str) -> Result<u64, StorageError> {
        self.inner.trim_session(supplier, session_id).await
    }
    async fn backlog(&self, supplier: &str) -> Result<Backlog, StorageError> {
        self.inner.backlog(supplier).await
    }
}

/// One ingest round takes the log as it is and leaves what arrives meanwhile to the next tick: under steady
/// load it used to chase the log in batches of a few relays, each with its own trie commit, record write and
/// ack (~1,100 durable commits per second at 2,000 relays/s), until the relayer paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingest_round_stops_at_the_first_partial_batch_instead_of_chasing_new_appends() {
    let Fixture {
        client,
        supplier,
        header,
        keyring,
        key,
        ..
    } = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(client, plain.clone(), keyring, config("a"));
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    // The miner reads through its fenced view (made when it became leader); the busy relayer goes in there.
    let fenced = miner.fenced.as_mut().unwrap();
    let busy = Arc::new(BusyRelayer {
        inner: fenced.relay_log.clone(),
        supplier: supplier.clone(),
        header: header.clone(),
        per_read: 5,
        next: Mutex::new(600),
        reads: Default::default(),
    });
    fenced.relay_log = busy.clone();
    let ingested = |m: &Miner| m.stats.relays_ingested.load(std::sync::atomic::Ordering::Relaxed);
    let reads = || busy.reads.load(std::sync::atomic::Ordering::Relaxed);

    plain
        .relay_log
        .append(relays(&supplier, &header, 0..600))
        .await
        .unwrap();
    // Read 1: a full batch of 512 (5 more arrive); read 2: the remaining 88 + those 5, fewer than a full batch,
    // so the round ends; the 5 that arrived during read 2 wait.
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (605, 2));
    assert_eq!(
        plain.relay_log.backlog(&supplier).await.unwrap(),
        Backlog {
            undelivered: 5,
            pending: 0
        }
    );
    assert_eq!(miner.engine.session(&key).unwrap().relays, 605);
    // The next tick takes them (and again leaves the 5 that arrived while it read).
    miner.step().await.unwrap();
    assert_eq!((ingested(&miner), reads()), (610, 3));
    assert_eq!(miner.engine.session(&key).unwrap().relays, 610);
}

/// A loss whose uPOKT value cannot be computed (the chain query failed) still counts its relays and compute
/// units exactly; the uPOKT counter does not move (the shortfall is logged at ERROR instead of adding 0).
#[tokio::test]
async fn a_loss_that_cannot_be_valued_counts_relays_and_compute_units_but_no_upokt() {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    // Nothing listens there: the client is never used by count_loss.
    let client = Arc::new(ChainClient::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap());
    let miner = Miner::new(
        client,
        MemoryBackend::new().storage(),
        Keyring::new(KeyMap::new()),
        config("a"),
    )
    .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let key = SessionKey {
        supplier: "pokt1supplier".into(),
        session_id: "s1".into(),
    };
    miner.count_loss(&key, "anvil", "claim_window_missed", 7, 70, None);
    miner.count_loss(&key, "anvil", "claim_window_missed", 1, 10, Some(42));
    let text = telemetry.render_metrics();
    let value = |name: &str| counter(&text, name, "claim_window_missed");
    assert_eq!(value("ha_miner_relays_lost_total"), Some(8));
    assert_eq!(value("ha_miner_compute_units_lost_total"), Some(80));
    assert_eq!(
        value("ha_miner_upokt_lost_total"),
        Some(42),
        "only the valued loss adds uPOKT"
    );
}

/// The test genesis plus one application per label of `apps`, staked for `anvil` and delegating to the gateway:
/// the supplier gets one more session per application at each height.
pub(super) fn genesis_with_apps(apps: &[&str]) -> Genesis {
    let mut g = genesis();
    for app in apps {
        g.applications.push(GenesisApplication {
            key_hex: key_hex(app),
            stake_upokt: 1_000_000,
            services: vec!["anvil".into()],
            delegate_to: vec![0],
        });
    }
    g
}

/// Application `app`'s `anvil` session at the chain's current height: its header and its key for the fixture's
/// supplier.
async fn app_session(f: &Fixture, app: &str) -> (SessionHeader, SessionKey) {
    let (_, address, _) = actor(&key_hex(app)).unwrap();
    let header = f
        .client
        .session(&address, "anvil", f.chain.height())
        .await
        .unwrap()
        .header
        .unwrap();
    let key = SessionKey {
        supplier: f.supplier.clone(),
        session_id: header.session_id.clone(),
    };
    (header, key)
}

/// Asserts that the chain holds the claim of every session of `keys`.
async fn assert_claimed(f: &Fixture, keys: &[&SessionKey]) {
    for key in keys {
        assert!(
            f.client.claim(&key.session_id, &key.supplier).await.unwrap().is_some(),
            "claim of {} on chain: {:?}",
            key.session_id,
            f.chain.records()
        );
    }
}

/// Asserts that the chain holds no claim of `key`'s session.
async fn assert_not_claimed(f: &Fixture, key: &SessionKey) {
    assert!(
        f.client.claim(&key.session_id, &key.supplier).await.unwrap().is_none(),
        "claim of {} on chain: {:?}",
        key.session_id,
        f.chain.records()
    );
}

/// Lets `miner` (a leader to be, over `plain`'s relay log) ingest relays 0..5 of the fixture's session, then
/// produces blocks up to the claim window's open (the miner has not seen it yet); returns the session schedule.
async fn ingest_until_claim_open(
    f: &Fixture,
    plain: &storage::Storage,
    miner: &mut Miner,
) -> crate::miner::lifecycle::Schedule {
    miner.step().await.unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..5))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < schedule.claim_open {
        f.chain.produce_block();
    }
    schedule
}

/// A miner on `plain` with metrics (registered with `telemetry`) that reads the chain's settlement events.
fn settling_miner(
    f: &Fixture,
    plain: &storage::Storage,
    telemetry: &crate::telemetry::Telemetry,
    instance: &str,
) -> Miner {
    Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config(instance))
        .with_settlements_from(f.comet.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(telemetry).unwrap())
}

/// A leader miner ([`settling_miner`] "a") that ingested signed relays (a proof can be built from them; the
/// fixture's fake ones are refused by the chain's proof checks), and the schedule of the fixture's session.
struct Leading {
    f: Fixture,
    miner: Miner,
    plain: storage::Storage,
    telemetry: crate::telemetry::Telemetry,
    schedule: crate::miner::lifecycle::Schedule,
}

/// [`Leading`] with 3 signed relays of the fixture's session, on a memory backend.
async fn leading() -> Leading {
    let f = fixture().await;
    let relays = signed_relays(&f, &f.header, "app", 0..3, 100);
    leading_with(f, MemoryBackend::new().storage(), relays).await
}

/// [`Leading`] on `plain`, with `relays` ingested.
async fn leading_with(f: Fixture, plain: storage::Storage, relays: Vec<MinedRelay>) -> Leading {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = settling_miner(&f, &plain, &telemetry, "a");
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
    plain.relay_log.append(relays).await.unwrap();
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    Leading {
        f,
        miner,
        plain,
        telemetry,
        schedule,
    }
}

/// A leader miner (with metrics, on a memory backend) that ingested relays 0..5 of the fixture's session and
/// sent their claim when the claim window opened, plus one more block that included the claim.
struct Claimed {
    f: Fixture,
    miner: Miner,
    plain: storage::Storage,
    telemetry: crate::telemetry::Telemetry,
    schedule: crate::miner::lifecycle::Schedule,
    on_chain: crate::protocol::wire::Claim,
}

async fn claimed(genesis: Genesis) -> Claimed {
    let f = fixture_on(genesis).await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at.len(),
        1,
        "claim sent"
    );
    f.chain.produce_block();
    let on_chain = f
        .client
        .claim(&f.key.session_id, &f.supplier)
        .await
        .unwrap()
        .expect("claim included");
    Claimed {
        f,
        miner,
        plain,
        telemetry,
        schedule,
        on_chain,
    }
}

/// A relay that reaches the miner after its session's claim was built (validated in the grace period and
/// appended only when the backend answered, or from a relayer whose height lags) stays out of the claimed
/// trie, which proofs are built from: its root stays the root on chain. The late relay is still counted once
/// (`relays_after_claim`), and a redelivered relay the claim already holds is not counted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_after_the_claim_stays_out_of_the_claimed_trie_so_its_root_stays_the_one_on_chain() {
    let Claimed {
        f,
        mut miner,
        plain,
        telemetry,
        on_chain,
        ..
    } = claimed(genesis()).await;
    let Fixture {
        chain,
        supplier,
        header,
        key,
        ..
    } = f;

    // A late relay, and a redelivery of a relay the claim holds.
    plain.relay_log.append(relays(&supplier, &header, 5..6)).await.unwrap();
    plain.relay_log.append(relays(&supplier, &header, 2..3)).await.unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&supplier).await.unwrap(), Backlog::default());
    let open = miner.tries.get_mut(&key).unwrap();
    assert_eq!(open.trie.count(), 5);
    assert_eq!(
        open.trie.root().to_vec(),
        on_chain.root_hash,
        "the claimed trie is the claim on chain"
    );
    assert_eq!(open.late.as_ref().map(|l| l.count()), Some(1));
    assert_eq!(miner.engine.session(&key).unwrap().relays, 6);

    // The next lookup confirms the claim: what it does not cover is recorded once, as relays_after_claim.
    for _ in 0..3 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    let text = telemetry.render_metrics();
    let lost = |name: &str| counter(&text, name, "relays_after_claim");
    assert_eq!(lost("ha_miner_relays_lost_total"), Some(1));
    assert_eq!(lost("ha_miner_compute_units_lost_total"), Some(10));
    // What the claim pays for is its root: 5 relays of 10 compute units, not the 6 relays the trie reached.
    let (service, end) = {
        let r = miner.engine.session(&key).unwrap();
        (r.service_id.clone(), r.schedule.session_end)
    };
    let claim_value = miner.upokt(&service, end, 50).await.unwrap();
    assert_ne!(Some(claim_value), miner.upokt(&service, end, 60).await);
    let claimed = text
        .lines()
        .find(|l| l.starts_with("ha_miner_upokt_claimed_total"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(claimed, Some(claim_value), "uPOKT claimed is the root's value");

    // After a restart both tries reopen from storage as they were.
    let store = plain.tries.open(&supplier, &key.session_id).await.unwrap();
    let mut claimed = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!(claimed.root().to_vec(), on_chain.root_hash);
    let late_ns = super::ingest::late_namespace(&key.session_id);
    let store = plain.tries.open(&supplier, &late_ns).await.unwrap();
    let late = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    assert_eq!((late.count(), late.sum()), (1, 10));
}

/// The count and sum of the trie stored in `(supplier, namespace)` (0 and 0 when it holds nothing).
async fn stored_trie(plain: &storage::Storage, supplier: &str, namespace: &str) -> (u64, u64) {
    let store = plain.tries.open(supplier, namespace).await.unwrap();
    let trie = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    (trie.count(), trie.sum())
}

/// The session's tombstone is the only record left in storage (module `lifecycle`) and its trie is deleted;
/// returns the tombstone.
async fn assert_session_pruned(plain: &storage::Storage, supplier: &str, session_id: &str) -> SessionRecord {
    let records = plain.sessions.list(None, None).await.unwrap();
    assert_eq!(records.len(), 1, "only the tombstone is left: {records:?}");
    assert_eq!(records[0].state, super::TOMBSTONE_STATE);
    let tombstone: SessionRecord = serde_json::from_slice(&records[0].data).unwrap();
    assert_eq!(tombstone.key.session_id, session_id);
    assert!(tombstone.pruned && tombstone.forget_after.is_some(), "{tombstone:?}");
    assert_eq!(stored_trie(plain, supplier, session_id).await, (0, 0), "trie deleted");
    tombstone
}

/// A settled session leaves only its tombstone behind: its trie and its relay-log entries are deleted from
/// storage, its record is replaced by the tombstone, and the engine keeps only the tombstone's key, so a miner
/// running for months holds and walks only live sessions. A record persisted as pruned whose deletes did not
/// all happen (the process stopped in between) is pruned again by the next leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_session_is_deleted_from_storage_and_memory_and_a_half_pruned_one_is_pruned_again() {
    let Claimed {
        f,
        mut miner,
        plain,
        schedule,
        ..
    } = claimed(genesis()).await;
    let (supplier, key) = (f.supplier.clone(), f.key.clone());
    assert_eq!(stored_trie(&plain, &supplier, &key.session_id).await, (5, 50));
    let mut settled = None;
    while f.chain.height() <= schedule.settlement + 1 {
        f.chain.produce_block();
        miner.step().await.unwrap();
        if let Some(r) = miner.engine.session(&key) {
            settled = Some(r.clone());
        }
    }
    let settled = settled.unwrap();
    assert_eq!(settled.state, crate::miner::lifecycle::State::Settled);
    assert!(miner.engine.session(&key).is_none(), "forgotten");
    assert!(miner.engine.is_tombstoned(&key));
    assert!(!miner.versions.contains_key(&key));
    assert_session_pruned(&plain, &supplier, &key.session_id).await;
    assert!(
        plain
            .relay_log
            .read(&supplier, "checker", 100)
            .await
            .unwrap()
            .is_empty(),
        "relay-log entries trimmed"
    );

    // The state a crash between persisting `pruned` and the deletes leaves: the record and the trie.
    let mut half = settled;
    half.pruned = true;
    let data = serde_json::to_vec(&half).unwrap();
    let version = plain
        .sessions
        .get(&supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap()
        .version;
    plain
        .sessions
        .put(&supplier, &key.session_id, half.state.as_str(), data, version)
        .await
        .unwrap();
    let store = plain.tries.open(&supplier, &key.session_id).await.unwrap();
    let mut trie = tokio::task::block_in_place(|| crate::smst::Smst::open(store)).unwrap();
    trie.insert_relay(&[7; 32], b"relay", 10);
    tokio::task::block_in_place(|| trie.commit()).unwrap();
    drop(trie);
    assert_eq!(stored_trie(&plain, &supplier, &key.session_id).await, (1, 10));

    // The next leader restores it and prunes it at its first block.
    let token = miner.leader_token.unwrap();
    drop(miner);
    assert!(plain.leadership.resign(ELECTION, "a", token).await.unwrap());
    let mut next = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("b"));
    next.step().await.unwrap();
    f.chain.produce_block();
    next.step().await.unwrap();
    assert!(next.engine.is_leader());
    assert!(next.engine.session(&key).is_none(), "pruned again");
    assert!(next.engine.is_tombstoned(&key));
    assert_session_pruned(&plain, &supplier, &key.session_id).await;
}

/// A miner of `f` on `storage`, with metrics on `telemetry`, whose proofs fit relays of at most 4,096 bytes
/// (`max_tx_bytes` = the proof's overhead + 4,096): a relay of 4,097 is too large to prove.
fn miner_proving_4k(f: &Fixture, storage: storage::Storage, telemetry: &crate::telemetry::Telemetry) -> Miner {
    Miner::new(
        f.client.clone(),
        storage,
        f.keyring.clone(),
        MinerConfig {
            max_tx_bytes: crate::smst::MAX_PROOF_OVERHEAD_BYTES + 4096,
            ..config("a")
        },
    )
    .with_metrics(crate::miner::metrics::MinerMetrics::new(telemetry).unwrap())
}

/// `relay` carrying `len` relay bytes of `fill` instead (its relay hash and payload follow).
fn resized(mut relay: MinedRelay, len: usize, fill: u8) -> MinedRelay {
    let mut message = MinedRelayMessage::decode(relay.payload.as_slice()).unwrap();
    message.relay_bytes = vec![fill; len];
    message.relay_hash = Sha256::digest(&message.relay_bytes).to_vec();
    relay.relay_hash = message.relay_hash.clone();
    relay.payload = message.encode_to_vec();
    relay
}

/// The value of the first series of counter `name` labelled `reason` in a metrics rendering.
fn counter(text: &str, name: &str, reason: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("reason=\"{reason}\"")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A trie whose root is not the claim's on chain (it should never happen: the claimed trie is frozen) gets no
/// proof sent: it could not verify and would cost its fee. The mismatch is counted and logged at ERROR; the
/// session expires when its proof window closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proof_is_sent_from_a_trie_whose_root_is_not_the_claim_on_chain() {
    let mut g = genesis();
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let Claimed {
        f,
        mut miner,
        telemetry,
        schedule,
        ..
    } = claimed(g).await;
    let Fixture { chain, key, .. } = f;
    // The trie changes behind the freeze's back.
    let extra = Sha256::digest(b"not claimed");
    miner
        .tries
        .get_mut(&key)
        .unwrap()
        .trie
        .insert_relay(&extra.into(), b"not claimed", 10);
    // Past the window, no validated proof said at two heights (`SessionRecord::proof_absent_at`).
    while chain.height() <= schedule.proof_close + 1 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    // Lost as a required proof taken as refused (a session needing no proof would have settled), then pruned.
    let text = telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "proof_not_included"),
        Some(5)
    );
    assert!(miner.engine.session(&key).is_none(), "pruned and forgotten");
    assert!(
        chain.records().iter().all(|r| r.kind != "proof"),
        "no proof reached the chain: {:?}",
        chain.records()
    );
    let text = telemetry.render_metrics();
    assert!(
        text.lines().any(|l| l.starts_with("ha_miner_proof_errors_total")
            && l.contains("reason=\"claim_root_mismatch\"")
            && l.ends_with(" 1")),
        "{text}"
    );
}

/// A leader miner (with metrics) whose leadership goes through a [`LaggingView`] over a memory backend, after
/// ingesting relays 0..5 and with the chain at the claim window's opening.
struct Confirming {
    f: Fixture,
    plain: storage::Storage,
    /// The fault plan of `plain`'s memory backend.
    faults: storage::memory::Faults,
    view: Arc<LaggingView>,
    telemetry: crate::telemetry::Telemetry,
    schedule: crate::miner::lifecycle::Schedule,
}

impl Confirming {
    async fn new() -> (Self, Miner) {
        let f = fixture().await;
        let backend = MemoryBackend::new();
        let faults = backend.faults().clone();
        let plain = backend.storage();
        let view = Arc::new(LaggingView::over(plain.leadership.clone()));
        let mut storage = plain.clone();
        storage.leadership = view.clone();
        let telemetry = crate::telemetry::Telemetry::new().unwrap();
        let mut miner = Miner::new(f.client.clone(), storage, f.keyring.clone(), config("a"))
            .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
        let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
        let c = Self {
            f,
            plain,
            faults,
            view,
            telemetry,
            schedule,
        };
        (c, miner)
    }

    /// Runs one step whose leadership confirmation before the claim is held until `meanwhile` ran.
    async fn step_holding_the_confirmation(&self, miner: Miner, meanwhile: impl AsyncFnOnce(&Self)) -> Miner {
        self.step_holding_the_nth_confirmation(miner, 1, meanwhile).await
    }

    /// Runs one step whose `n`th leadership confirmation (1: the one before the claim is built into a tx; 2: the
    /// last one right before the tx leaves) is held until `meanwhile` ran; the ones before pass.
    async fn step_holding_the_nth_confirmation(
        &self,
        mut miner: Miner,
        n: usize,
        meanwhile: impl AsyncFnOnce(&Self),
    ) -> Miner {
        let held = self.view.hold.write().await;
        let before = self.view.renewals.load(std::sync::atomic::Ordering::SeqCst);
        self.view
            .hold_from
            .store(before + n - 1, std::sync::atomic::Ordering::SeqCst);
        let stalled = tokio::spawn(async move {
            miner.step().await.unwrap();
            miner
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.view.renewals.load(std::sync::atomic::Ordering::SeqCst) < before + n {
            assert!(
                std::time::Instant::now() < deadline,
                "the miner never confirmed its leadership"
            );
            tokio::task::yield_now().await;
        }
        meanwhile(self).await;
        drop(held);
        let miner = stalled.await.unwrap();
        self.view.hold_from.store(0, std::sync::atomic::Ordering::SeqCst);
        miner
    }

    /// Instance "a" (token `token`) resigns and instance "b" takes the leadership.
    async fn hand_the_leadership_to_b(&self, token: u64) {
        assert!(self.plain.leadership.resign(ELECTION, "a", token).await.unwrap());
        let b = self
            .plain
            .leadership
            .campaign(ELECTION, "b", Duration::from_secs(30))
            .await
            .unwrap();
        assert!(b.is_some(), "b did not get the leadership");
    }

    /// `ha_miner_claim_errors_total{reason}`.
    fn claim_errors(&self, reason: &str) -> Option<u64> {
        self.telemetry
            .render_metrics()
            .lines()
            .find(|l| l.starts_with("ha_miner_claim_errors_total") && l.contains(&format!("reason=\"{reason}\"")))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// The engine decided to send the claim at the window's opening, no node was reached, and the error counter
    /// took it once under `reason` (never as `retryable`, a node's refusal). A send no node took is taken back
    /// (the record holds no send), so it is repeated at the next block if the window still allows.
    fn assert_decided_but_not_sent(&self, miner: &Miner, reason: &str) {
        let record = miner.engine.session(&self.f.key).unwrap();
        assert_eq!(record.claim_sent_at, Vec::<i64>::new(), "the send was taken back");
        assert!(!record.claim_reached_node, "the claim was broadcast ({reason})");
        assert!(
            !record.is_claim_built(),
            "a claim that never left froze the trie ({reason})"
        );
        assert_eq!(self.claim_errors(reason), Some(1));
        assert_eq!(self.claim_errors("retryable"), None);
    }

    fn no_claim_on_chain(&self) {
        assert!(
            self.f.chain.records().iter().all(|r| r.kind != "claim"),
            "a claim reached the chain: {:?}",
            self.f.chain.records()
        );
    }
}

/// Confirming the leadership right before a submission can take blocks (a raft commit waits out a partition).
/// A claim whose deadline passed meanwhile is not sent: included after its window it would be refused and cost
/// its fee. The engine takes it as a send that never left, so the session is lost as `claim_window_missed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_deadline_passed_while_the_leadership_was_confirmed_is_not_sent() {
    let (c, miner) = Confirming::new().await;
    // The claim's confirmation is held while the chain passes the claim deadline (close − 1 block of buffer).
    let mut miner = c
        .step_holding_the_confirmation(miner, async |c: &Confirming| {
            while c.f.chain.height() < c.schedule.claim_close {
                c.f.chain.produce_block();
            }
        })
        .await;
    // Not broadcast after its deadline, and counted as not sent because of it, not as a node's refusal.
    c.assert_decided_but_not_sent(&miner, "deadline_passed");
    // Lost once the chain said "no claim" at two heights past the window (`SessionRecord::claim_absent_at`).
    for _ in 0..2 {
        c.f.chain.produce_block();
        miner.step().await.unwrap();
    }
    c.no_claim_on_chain();
    let text = c.telemetry.render_metrics();
    assert_eq!(
        counter(&text, "ha_miner_relays_lost_total", "claim_window_missed"),
        Some(5)
    );
    assert!(miner.engine.session(&c.f.key).is_none(), "pruned and forgotten");
}

/// A miner that lost its leadership between deciding and sending sends nothing, and says so in its own error
/// reason (`not_leader`: routine in a cluster) instead of as a node's refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_decided_by_a_miner_that_lost_its_leadership_is_not_sent_and_counted_as_not_leader() {
    let (c, miner) = Confirming::new().await;
    let token = miner.leader_token.expect("the miner leads");
    let miner = c
        .step_holding_the_confirmation(miner, async move |c: &Confirming| {
            // Another instance takes over while the confirmation waits.
            c.hand_the_leadership_to_b(token).await;
        })
        .await;
    c.assert_decided_but_not_sent(&miner, "not_leader");
    c.no_claim_on_chain();
}

/// The leadership confirmed at the start of a submission holds only for a moment; building the tx (account,
/// block, simulation) takes longer. A miner deposed in between sends nothing: the leadership is confirmed once
/// more right before the tx leaves, and the send counts as `not_leader`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miner_deposed_while_its_tx_was_being_built_does_not_send_it() {
    let (c, miner) = Confirming::new().await;
    let token = miner.leader_token.expect("the miner leads");
    let miner = c
        .step_holding_the_nth_confirmation(miner, 2, async move |c: &Confirming| {
            c.hand_the_leadership_to_b(token).await;
        })
        .await;
    c.assert_decided_but_not_sent(&miner, "not_leader");
    c.no_claim_on_chain();
}

/// The engine emits a loss report once, when it changes the session in memory. When the record saying so
/// cannot be stored (storage refuses writes), the report waits with it and runs once the record is stored at a
/// later iteration: not dropped with the failed iteration, not counted twice. A miner that loses its leadership
/// first drops both: the next leader moves the stored record itself and reports the loss once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_is_reported_once_its_record_is_stored_even_when_the_first_write_fails() {
    use crate::miner::lifecycle::{Command, LossReason, Step};
    let (c, mut miner) = Confirming::new().await;
    let lost =
        |c: &Confirming, reason: &str| counter(&c.telemetry.render_metrics(), "ha_miner_relays_lost_total", reason);
    let loss = |reason: LossReason| Step {
        changed: vec![c.f.key.clone()],
        commands: vec![Command::RecordLoss {
            key: c.f.key.clone(),
            reason,
            relays: 5,
            compute_units: 50,
        }],
    };
    // The record change a loss comes with (a record equal to the stored one, `queried_at` aside, is not
    // written again).
    let change = |miner: &mut Miner| {
        let mut record = miner.engine.session(&c.f.key).unwrap().clone();
        record.relays += 1;
        miner.engine.restore(record);
    };
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    change(&mut miner);
    assert!(miner.execute(loss(LossReason::ClaimWindowMissed)).await.is_err());
    assert_eq!(
        lost(&c, "claim_window_missed"),
        None,
        "reported before its record was stored"
    );
    assert!(miner.persist_pending().await.is_err(), "storage still refuses");
    assert_eq!(lost(&c, "claim_window_missed"), None);
    c.faults.refuse_writes(None);
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5), "reported once stored");
    miner.persist_pending().await.unwrap();
    miner.step().await.unwrap();
    assert_eq!(lost(&c, "claim_window_missed"), Some(5), "reported once");

    // Not stored, then the leadership is lost: nothing is reported by this miner.
    c.faults
        .refuse_writes(Some(StorageError::Unavailable("test: storage down".into())));
    change(&mut miner);
    assert!(miner.execute(loss(LossReason::ClaimNotIncluded)).await.is_err());
    miner.leave_leader_mode();
    c.faults.refuse_writes(None);
    miner.persist_pending().await.unwrap();
    assert_eq!(lost(&c, "claim_not_included"), None, "a deposed miner reported a loss");
}

/// A leader miner with metrics, on a memory backend, that ingested relays 0..5 of the fixture's session, with the
/// chain at the claim window's opening (the miner has not seen it yet).
async fn leader_at_claim_open() -> (
    Fixture,
    crate::telemetry::Telemetry,
    Miner,
    crate::miner::lifecycle::Schedule,
) {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    (f, telemetry, miner, schedule)
}

/// Sessions whose commands fail do not hold back the claims of the supplier's other sessions due at the same
/// height. Here two records from before session headers were persisted (their tries cannot be opened): one due
/// for its claim, in the same batch as the good session (its failed send is taken back, counted as
/// `build_failed`, and tried again at the next block), and one whose proof requirement is due at this height
/// (that check fails before the claims are sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_whose_commands_fail_do_not_hold_back_the_others_claims() {
    let (f, telemetry, mut miner, schedule) = leader_at_claim_open().await;
    let good = miner.engine.session(&f.key).unwrap().clone();
    let mut unclaimable = good.clone();
    unclaimable.key.session_id = "0".repeat(64);
    unclaimable.application_address = String::new();
    let unclaimable_key = unclaimable.key.clone();
    assert!(unclaimable_key < f.key, "it comes first in the supplier's batch");
    miner.engine.restore(unclaimable);
    let mut unchecked = good.clone();
    unchecked.key.session_id = "1".repeat(64);
    unchecked.application_address = String::new();
    unchecked.state = crate::miner::lifecycle::State::Claimed;
    unchecked.schedule.proof_open = schedule.claim_open + 1;
    assert_eq!(unchecked.schedule.proof_seed_height(), schedule.claim_open);
    miner.engine.restore(unchecked);

    assert!(
        miner.step().await.is_err(),
        "the failed proof-requirement check is reported"
    );
    f.chain.produce_block();
    assert!(
        f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_some(),
        "the good session's claim is on chain: {:?}",
        f.chain.records()
    );
    let build_failures = || {
        counter(
            &telemetry.render_metrics(),
            "ha_miner_claim_errors_total",
            "build_failed",
        )
    };
    assert_eq!(build_failures(), Some(1));
    assert_eq!(
        miner.engine.session(&unclaimable_key).unwrap().claim_sent_at,
        Vec::<i64>::new()
    );
    assert!(miner.step().await.is_err());
    assert_eq!(build_failures(), Some(2), "tried again at the next block");
}

/// A batch the node refuses because of one session's message (here a claim whose trie is empty: the chain
/// refuses a root of zero sum, §6.1) is sent again message by message, so the supplier's other claim due at the
/// same height still lands. The refused session is looked up, and tried again at the next block (a refusal
/// before the mempool costs nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_resent_message_by_message_so_one_bad_claim_does_not_sink_the_others() {
    let (f, telemetry, mut miner, _) = leader_at_claim_open().await;
    let mut empty = miner.engine.session(&f.key).unwrap().clone();
    empty.key.session_id = "0".repeat(64);
    let empty_key = empty.key.clone();
    miner.engine.restore(empty);

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key]).await;
    assert_not_claimed(&f, &empty_key).await;
    assert_eq!(
        counter(&telemetry.render_metrics(), "ha_miner_claim_errors_total", "refused"),
        Some(1),
        "only the bad claim is refused"
    );
}

/// Live sessions in storage whose supplier's key is no longer in the keys file (removed, then a restart) cannot
/// be claimed: the leader says so when it takes the leadership (ERROR log, `keyless_sessions`), and keeps the
/// records, so adding the key back restores them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_reports_live_sessions_of_suppliers_without_a_key() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert_eq!(
        miner.stats().keyless_sessions.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    drop(miner);

    let mut restarted = Miner::new(
        f.client.clone(),
        plain.clone(),
        Keyring::new(KeyMap::new()),
        config("a"),
    );
    restarted.step().await.unwrap();
    assert!(restarted.engine.is_leader());
    assert_eq!(
        restarted
            .stats()
            .keyless_sessions
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(
        restarted.engine.session(&f.key).is_none(),
        "not restored without its key"
    );
    assert!(
        plain
            .sessions
            .get(&f.supplier, &f.key.session_id)
            .await
            .unwrap()
            .is_some(),
        "the record is kept"
    );
}

/// A claim the miner confirms only after its session settled (it was down from the block after its send until
/// past the settlement): poktroll paid the claim and deleted it, so the lookup finds no claim. The miner reads
/// the settlement from the block's events (CometBFT `block_results`) and counts the claim included and paid, not
/// lost. A miner that cannot read them counts the same session as `claim_not_included`, a false alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_settled_before_the_miner_looked_it_up_is_read_from_the_settlement_events_not_counted_lost() {
    for with_events in [true, false] {
        let Claimed {
            f,
            miner,
            telemetry,
            schedule,
            ..
        } = claimed(genesis()).await;
        let mut miner = if with_events {
            miner.with_settlements_from(f.comet.clone())
        } else {
            miner
        };
        assert_eq!(
            miner.engine.session(&f.key).unwrap().state,
            crate::miner::lifecycle::State::Claiming
        );
        assert_eq!(schedule.settlement, schedule.proof_close);
        while f.chain.height() <= schedule.settlement {
            f.chain.produce_block();
        }
        assert!(
            matches!(&f.chain.settlements()[..], [(_, _, crate::sim::chain::Settlement::Settled(v))] if *v > 0),
            "{:?}",
            f.chain.settlements()
        );
        assert!(f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_none());
        miner.step().await.unwrap();
        if !with_events {
            // No claim and no settlement read: lost only when said again at a later height
            // (`SessionRecord::claim_absent_at`).
            assert_eq!(
                miner.engine.session(&f.key).unwrap().state,
                crate::miner::lifecycle::State::Claiming
            );
            f.chain.produce_block();
            miner.step().await.unwrap();
        }
        // Decided and, as its settlement is past, pruned in the same step.
        assert!(miner.engine.session(&f.key).is_none(), "pruned and forgotten");
        let text = telemetry.render_metrics();
        let series = |name: &str, label: &str| {
            text.lines()
                .find(|l| l.starts_with(name) && l.contains(label))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        };
        if with_events {
            assert_eq!(series("ha_miner_claim_inclusion_outcome_total", "included"), Some(1));
            assert!(
                series("ha_miner_upokt_claimed_total", "anvil").is_some_and(|v| v > 0),
                "{text}"
            );
            assert!(!text.contains("ha_miner_upokt_lost_total{"), "{text}");
        } else {
            assert_eq!(
                counter(&text, "ha_miner_relays_lost_total", "claim_not_included"),
                Some(5)
            );
        }
    }
}

/// Two good claims and one bad one of a supplier due at the same height: the batch is refused (the bad claim)
/// and re-sent message by message while the latest block is unchanged. Each of those unordered txs needs its
/// own timeout (cosmos-sdk v0.53 keeps one nonce per (signer, timeout), refusing a repeat at CheckTx with code
/// 18), so both good claims land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_resent_message_by_message_in_one_block_lands_every_good_claim() {
    let f = fixture_on(genesis_with_apps(&["app2"])).await;
    let (header2, key2) = app_session(&f, "app2").await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    plain
        .relay_log
        .append(relays(&f.supplier, &header2, 0..3))
        .await
        .unwrap();
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    assert_eq!(
        miner.engine.session(&key2).unwrap().schedule,
        miner.engine.session(&f.key).unwrap().schedule,
        "both due together"
    );
    let mut empty = miner.engine.session(&f.key).unwrap().clone();
    empty.key.session_id = "0".repeat(64);
    miner.engine.restore(empty);

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert_claimed(&f, &[&f.key, &key2]).await;
}

/// The node's gRPC latest block can be one ahead of the committed state Simulate and CheckTx run on (CometBFT
/// stores a block before the app commits it), so a claim sent at `claim_open` can be refused once ("outside the
/// window"). A refusal before the mempool costs nothing and is not final: the claim is sent again at the next
/// block, without using up its re-send, and lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_refused_once_by_simulate_at_window_open_lands_at_the_next_block() {
    let (f, telemetry, mut miner, _) = leader_at_claim_open().await;
    f.chain.state().refuse_simulations = 1;
    miner.step().await.unwrap();
    f.chain.produce_block();
    assert!(f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_none());
    let record = miner.engine.session(&f.key).unwrap();
    assert_eq!(
        record.claim_sent_at,
        Vec::<i64>::new(),
        "the refused send is taken back"
    );
    assert!(record.claim_reached_node);
    assert_eq!(
        counter(&telemetry.render_metrics(), "ha_miner_claim_errors_total", "refused"),
        Some(1)
    );

    miner.step().await.unwrap();
    f.chain.produce_block();
    assert!(
        f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_some(),
        "sent again at the next block: {:?}",
        f.chain.records()
    );
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at.len(), 1);
}

/// Splitting by size keeps the messages' order and each tx, signed, within `max_tx_bytes`; a message too large
/// for any tx goes alone.
#[test]
fn messages_are_split_into_txs_within_the_size_limit() {
    use crate::chain::tx::{Ordering, Timestamp, TxPlan, build_signed_tx};
    let message = |n: usize, len: usize| {
        (
            n,
            crate::protocol::wire::Any {
                type_url: crate::protocol::wire::MSG_SUBMIT_PROOF_TYPE_URL.into(),
                value: vec![7; len],
            },
        )
    };
    let max = 10_000;
    let messages: Vec<_> = (0..7)
        .map(|n| message(n, 3_000))
        .chain([message(7, 20_000), message(8, 10)])
        .collect();
    let txs = super::submit::split_by_size(messages, max);
    let order: Vec<Vec<usize>> = txs.iter().map(|tx| tx.iter().map(|(n, _)| *n).collect()).collect();
    assert_eq!(order, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6], vec![7], vec![8]]);
    let key = k256::ecdsa::SigningKey::from_slice(&Sha256::digest(b"size")).unwrap();
    for tx in txs.iter().filter(|tx| tx[0].0 != 7) {
        let plan = TxPlan {
            messages: tx.iter().map(|(_, m)| m.clone()).collect(),
            memo: String::new(),
            gas_limit: u64::MAX,
            fee_amount: u128::from(u64::MAX),
            fee_denom: "upokt".into(),
            ordering: Ordering::unordered(
                Timestamp {
                    seconds: i64::from(u32::MAX),
                    nanos: 999_999_999,
                },
                600,
            ),
            chain_id: "pocket-lego-testnet".into(),
            account_number: u64::MAX,
        };
        let size = build_signed_tx(&key, &plan).unwrap().tx_bytes.len();
        assert!(size <= max, "a tx of {size} bytes");
    }
}

/// A relay of the fixture's application, signed by its gateway (ring [app, gateway]) and answered by the
/// supplier, with a payload of `payload` bytes: one a proof can be built from and the chain validates (§5.4).
fn signed_relays(
    f: &Fixture,
    header: &SessionHeader,
    app: &str,
    n: std::ops::Range<u64>,
    payload: usize,
) -> Vec<MinedRelay> {
    use crate::protocol::relay;
    use crate::protocol::wire::{RelayRequest, RelayRequestMetadata};
    use k256::elliptic_curve::ops::Reduce as _;
    let (_, _, app_pub) = actor(&key_hex(app)).unwrap();
    let (gateway_key, _, gateway_pub) = actor(&key_hex("gateway")).unwrap();
    let (supplier_key, _, _) = actor(&key_hex("supplier")).unwrap();
    n.map(|i| {
        let mut request = RelayRequest {
            meta: Some(RelayRequestMetadata {
                session_header: Some(header.clone()),
                signature: vec![],
                supplier_operator_address: f.supplier.clone(),
            }),
            payload: format!("{{\"id\":{i},\"pad\":\"{}\"}}", "x".repeat(payload)).into_bytes(),
        };
        let secret = k256::Scalar::reduce(&gateway_key.to_bytes());
        request.meta.as_mut().unwrap().signature = crate::protocol::ring::RingSignature::sign(
            &[app_pub, gateway_pub],
            &relay::request_signable_hash(&request),
            &secret,
        )
        .unwrap()
        .to_bytes();
        let response = relay::sign_response(&request, b"{\"result\":\"0x10\"}".to_vec(), &supplier_key);
        let relay_bytes = relay::relay_bytes(&request, &response);
        let relay_hash = relay::relay_hash(&relay_bytes).to_vec();
        let message = MinedRelayMessage {
            relay_hash: relay_hash.clone(),
            relay_bytes,
            compute_units_per_relay: 10,
            session_id: header.session_id.clone(),
            session_end_height: header.session_end_block_height,
            supplier_operator_address: f.supplier.clone(),
            service_id: "anvil".into(),
            application_address: header.application_address.clone(),
            arrival_block_height: header.session_start_block_height,
            published_at_unix_nano: 0,
            session_start_height: header.session_start_block_height,
        };
        MinedRelay {
            supplier: f.supplier.clone(),
            session_id: header.session_id.clone(),
            session_end_height: u64::try_from(header.session_end_block_height).unwrap(),
            relay_hash,
            payload: message.encode_to_vec(),
        }
    })
    .collect()
}

/// Proofs carry relay payloads: a supplier's proofs due together can exceed the node's largest tx (CometBFT
/// `mempool.max_tx_bytes`, refused at CheckTx with code 21). They go out in several txs within
/// `max_tx_bytes`, none refused, and every proof is validated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_over_the_size_limit_go_out_in_several_txs_and_all_land() {
    const APPS: [&str; 4] = ["app", "app2", "app3", "app4"];
    // Relays with a 10,000-byte payload make proof txs of ~22 KB: two proofs fit a tx, three do not, and each
    // relay is under the limit less the proof overhead (`MAX_PROOF_OVERHEAD_BYTES`), so it is mined.
    const LIMIT: usize = 48_000;
    let mut g = genesis_with_apps(&APPS[1..]);
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    let f = fixture_on(g).await;
    f.chain.state().max_tx_bytes = LIMIT;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut cfg = config("a");
    cfg.max_tx_bytes = LIMIT;
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    let mut keys = Vec::new();
    for app in APPS {
        let (header, key) = app_session(&f, app).await;
        plain
            .relay_log
            .append(signed_relays(&f, &header, app, 0..2, 10_000))
            .await
            .unwrap();
        keys.push(key);
    }
    miner.step().await.unwrap();
    let schedule = miner.engine.session(&keys[0]).unwrap().schedule;
    while f.chain.height() <= schedule.proof_close {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    // Settled claims left the chain's state; the simulator keeps them apart with their validated proof.
    for key in &keys {
        let status = f
            .chain
            .state()
            .settled
            .get(&(key.session_id.clone(), f.supplier.clone()))
            .map(|e| e.claim.proof_validation_status);
        assert_eq!(
            status,
            Some(crate::protocol::wire::ClaimProofStatus::Validated as i32),
            "{:?}",
            f.chain.records()
        );
    }
    // (height, proofs in the tx, tx size) of every tx with proofs.
    let proof_txs: Vec<(i64, usize, usize)> = f
        .chain
        .state()
        .block_txs
        .iter()
        .flat_map(|(height, txs)| txs.iter().map(move |tx| (*height, tx)))
        .filter_map(|(height, tx)| {
            let raw = crate::chain::tx::TxRaw::decode(tx.as_slice()).unwrap();
            let body = crate::chain::tx::TxBody::decode(raw.body_bytes.as_slice()).unwrap();
            let proofs = body
                .messages
                .iter()
                .filter(|m| m.type_url == crate::protocol::wire::MSG_SUBMIT_PROOF_TYPE_URL)
                .count();
            (proofs > 0).then_some((height, proofs, tx.len()))
        })
        .collect();
    assert!(proof_txs.len() > 1, "one tx for every proof: {proof_txs:?}");
    assert!(proof_txs.len() < keys.len(), "not one tx per proof: {proof_txs:?}");
    assert_eq!(
        proof_txs.iter().map(|t| t.1).sum::<usize>(),
        keys.len(),
        "each proof sent once"
    );
    assert!(proof_txs.iter().all(|t| t.2 <= LIMIT), "{proof_txs:?}");
    let text = telemetry.render_metrics();
    assert_eq!(counter(&text, "ha_miner_proof_errors_total", "refused"), None, "{text}");
}

/// `transaction.gas_limit` ≠ 0: every tx carries that gas limit (and its fee) and Simulate is not asked (here the
/// node would refuse every simulation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_gas_limit_skips_simulate() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut cfg = config("a");
    cfg.gas_limit = 345_678;
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    f.chain.state().refuse_simulations = usize::MAX;
    miner.step().await.unwrap();
    f.chain.produce_block();
    assert!(
        f.client.claim(&f.key.session_id, &f.supplier).await.unwrap().is_some(),
        "{:?}",
        f.chain.records()
    );
    let fees: Vec<_> = f
        .chain
        .state()
        .block_txs
        .values()
        .flatten()
        .map(|tx| {
            let raw = crate::chain::tx::TxRaw::decode(tx.as_slice()).unwrap();
            crate::chain::tx::AuthInfo::decode(raw.auth_info_bytes.as_slice())
                .unwrap()
                .fee
                .unwrap()
        })
        .map(|fee| (fee.gas_limit, fee.amount[0].amount.clone()))
        .collect();
    assert_eq!(
        fees,
        vec![(345_678, "1".to_string())],
        "0.000001upokt × 345678, rounded up"
    );
}

/// A claim broadcast whose outcome is unknown (the node may have admitted the tx, the client saw a transport
/// error) is taken back and repeated, but the claim may be on chain already: the claimed trie stays frozen. A
/// relay ingested before the repeat goes to the late trie, so the root on chain stays the trie's root and the
/// proof can be built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_send_with_an_unknown_outcome_keeps_the_claimed_trie_frozen() {
    use crate::miner::lifecycle::{Event, TxKind, TxOutcome};
    let Claimed {
        f,
        mut miner,
        plain,
        on_chain,
        ..
    } = claimed(genesis()).await;
    let key = f.key.clone();
    // What `send` feeds the engine when BroadcastTx fails at the transport after the node took the tx.
    let step = miner.engine.handle(Event::TxOutcome {
        kind: TxKind::Claim,
        keys: vec![key.clone()],
        outcome: TxOutcome::Retryable("transport: deadline exceeded".into()),
    });
    miner.execute(step).await.unwrap();
    let record = miner.engine.session(&key).unwrap();
    assert!(record.claim_sent_at.is_empty(), "send taken back");
    assert!(record.claim_built, "but the claim was built");
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..6))
        .await
        .unwrap();
    miner.step().await.unwrap();
    let open = miner.tries.get_mut(&key).unwrap();
    assert_eq!(
        open.trie.root().to_vec(),
        on_chain.root_hash,
        "the claimed trie did not change"
    );
    assert_eq!(
        open.late.as_ref().map(|l| l.count()),
        Some(1),
        "the late relay went to the late trie"
    );
}

/// A relay-log entry the miner cannot read (its payload does not decode, or its relay hash is not 32 bytes) is
/// logged, counted, acknowledged and skipped. Left in the log it would fail every ingest round, and with it the
/// block handling: no claim or proof of any supplier would go out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_relay_log_entry_is_skipped_and_does_not_stop_the_claims() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    miner.step().await.unwrap();
    let unreadable = |payload: Vec<u8>| MinedRelay {
        supplier: f.supplier.clone(),
        session_id: f.header.session_id.clone(),
        session_end_height: u64::try_from(f.header.session_end_block_height).unwrap(),
        relay_hash: vec![0; 32],
        payload,
    };
    let mut short_hash = relays(&f.supplier, &f.header, 9..10).remove(0);
    let mut message = MinedRelayMessage::decode(short_hash.payload.as_slice()).unwrap();
    message.relay_hash.truncate(31);
    short_hash.payload = message.encode_to_vec();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(vec![unreadable(vec![0xff, 0xff, 0xff]), short_hash])
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 3..5))
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    assert_eq!(
        miner.stats.relays_unreadable.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    let text = telemetry.render_metrics();
    assert!(
        text.lines().any(|l| l.starts_with("ha_miner_relays_rejected_total")
            && l.contains("reason=\"undecodable\"")
            && l.ends_with(" 1")),
        "{text}"
    );
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() <= schedule.claim_open {
        f.chain.produce_block();
        miner.step().await.unwrap();
    }
    let claim = f
        .client
        .claim(&f.key.session_id, &f.supplier)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(u64::from_be_bytes(claim.root_hash[40..48].try_into().unwrap()), 5);
}

/// A prune whose storage delete fails (a transient error) is retried: the session's trie, relay-log entries and
/// record do not stay in storage, and the record in memory, until the next restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prune_is_retried_until_the_session_is_gone() {
    let f = fixture().await;
    let backend = MemoryBackend::new();
    let faults = backend.faults().clone();
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"));
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    while f.chain.height() < schedule.settlement {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().state,
        crate::miner::lifecycle::State::Settled
    );
    // The prune block: write 1 = the record (pruned = true), write 2 = delete_namespace, which fails once.
    faults.fail_nth_write(2, StorageError::Unavailable("transient".into()));
    f.chain.produce_block();
    assert!(miner.step().await.is_err());
    assert!(
        miner.engine.session(&f.key).is_some_and(|r| !r.pruned),
        "to be pruned again"
    );
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert!(miner.engine.session(&f.key).is_none(), "pruned");
    assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
}

/// Opens the embedded database at `path`, retrying while the threads of a dropped handle still hold it.
async fn open_redb(path: &std::path::Path) -> storage::RedbBackend {
    storage::suite::poll_until("the database can be opened", || async {
        match storage::RedbBackend::open(storage::RedbConfig::new(path)).await {
            Ok(b) => Some(b),
            Err(StorageError::Backend(msg)) if msg.contains("already open") => None,
            Err(e) => panic!("open failed: {e}"),
        }
    })
    .await
}

/// The value of counter `name` with the label `reason="{reason}"` (0 when the series does not exist).
fn rejected(telemetry: &crate::telemetry::Telemetry, reason: &str) -> u64 {
    counter(&telemetry.render_metrics(), "ha_miner_relays_rejected_total", reason).unwrap_or(0)
}

/// A relay of a session the miner already pruned (redelivered, or appended late by a relayer that lags)
/// reaches the log: it is acknowledged and not mined, on the embedded backend and across a restart, because the
/// session's tombstone is stored with its record. Mined, it started a new record that went through the
/// lifecycle again and was counted lost (`claim_window_missed`) for relays the claim had already paid for.
/// Once the tombstone expired, a relay of the session is mined like one of a session never seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_a_pruned_session_is_acknowledged_not_mined_even_after_a_restart() {
    use std::sync::atomic::Ordering::Relaxed;
    let f = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("miner.redb");
    let mut cfg = config("a");
    cfg.engine.tombstone_blocks = 5;
    let backend = open_redb(&path).await;
    let plain = backend.storage();
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg.clone())
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    while miner.engine.session(&f.key).is_some() {
        assert!(
            f.chain.height() <= schedule.settlement + 1,
            "pruned after the settlement height"
        );
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_eq!(miner.stats.claims_confirmed.load(Relaxed), 1);

    // Relays 0..3 redelivered and a relay never seen (appended late): acknowledged, nothing mined or counted.
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 0..3))
        .await
        .unwrap();
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 7..8))
        .await
        .unwrap();
    for _ in 0..2 {
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 0, "nothing lost twice");
    assert!(miner.engine.session(&f.key).is_none(), "no new record");
    assert_eq!(miner.stats.claims_sent.load(Relaxed), 1, "nothing claimed twice");
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_sessions_failed_total",
            "claim_window_missed"
        ),
        None
    );
    assert_eq!(miner.stats.relays_after_prune.load(Relaxed), 4);
    assert_eq!(rejected(&telemetry, "session_pruned"), 4);
    let tombstone = assert_session_pruned(&plain, &f.supplier, &f.key.session_id).await;
    let forget_after = tombstone.forget_after.unwrap();
    assert!(f.chain.height() <= forget_after);

    // A restart: the tombstone comes back from storage.
    drop(miner);
    drop(plain);
    drop(backend);
    let backend = open_redb(&path).await;
    let plain = backend.storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg.clone());
    miner.step().await.unwrap();
    assert!(miner.engine.is_tombstoned(&f.key));
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 8..9))
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert!(miner.engine.session(&f.key).is_none());
    assert_eq!(miner.stats.relays_after_prune.load(Relaxed), 1);

    // Past its bound the tombstone is deleted; a relay after that is mined as one of a session never seen
    // (lost, since its windows are long gone: a relay that late is not a redelivery of anything paid).
    while f.chain.height() <= forget_after {
        f.chain.produce_block();
    }
    miner.step().await.unwrap();
    assert!(!miner.engine.is_tombstoned(&f.key));
    assert!(
        plain.sessions.list(None, None).await.unwrap().is_empty(),
        "tombstone deleted"
    );
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 9..10))
        .await
        .unwrap();
    miner.step().await.unwrap();
    // Its claim said absent once: lost at the next block's lookup (`SessionRecord::claim_absent_at`).
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 0);
    f.chain.produce_block();
    miner.step().await.unwrap();
    assert_eq!(miner.stats.sessions_lost.load(Relaxed), 1);
    assert!(miner.engine.is_tombstoned(&f.key), "lost, pruned, and tombstoned again");
}

/// With the default claim delay (one block) a relay accepted just before `claim_open` that reaches the log only
/// at `claim_open` (a relayer a block behind, a slow backend) is in the claim: the claim goes out a block
/// later, from a trie that holds it, and nothing is recorded lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_relay_appended_at_claim_open_is_in_the_claim_sent_after_the_delay() {
    let f = fixture().await;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(
        f.client.clone(),
        plain.clone(),
        f.keyring.clone(),
        MinerConfig {
            engine: Default::default(),
            ..config("a")
        },
    );
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    assert_eq!(miner.engine.session(&f.key).unwrap().claim_sent_at, Vec::<i64>::new());
    plain
        .relay_log
        .append(relays(&f.supplier, &f.header, 5..6))
        .await
        .unwrap();
    f.chain.produce_block();
    assert_eq!(f.chain.height(), schedule.claim_open + 1);
    miner.step().await.unwrap();
    f.chain.produce_block();
    let claim = f.client.claim(&f.key.session_id, &f.supplier).await.unwrap();
    let claim = claim.unwrap_or_else(|| panic!("no claim on chain: {:?}", f.chain.records()));
    let (_, count) = crate::smst::hash::root_sum_count(&claim.root_hash).unwrap();
    assert_eq!(count, 6, "the grace relay is in the claim");
    let open = miner.tries.get_mut(&f.key).unwrap();
    assert!(open.late.is_none(), "nothing went to the late trie");
}

/// A relay whose proof would not fit a tx (`max_tx_bytes` less the proof's overhead) is not counted into the
/// trie: picked for the proof, it would make the claim unprovable (expired, slashed). It is acknowledged and
/// counted as `too_large_to_prove`; the session's other relays are claimed as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_too_large_to_prove_is_not_counted_into_the_trie() {
    let f = fixture().await;
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = miner_proving_4k(&f, plain.clone(), &telemetry);
    miner.step().await.unwrap();
    let sized = |i: u64, len: usize| resized(relays(&f.supplier, &f.header, i..i + 1).remove(0), len, i as u8);
    plain
        .relay_log
        .append(vec![sized(1, 4096), sized(2, 4097), sized(3, 100)])
        .await
        .unwrap();
    miner.step().await.unwrap();
    assert_eq!(plain.relay_log.backlog(&f.supplier).await.unwrap(), Backlog::default());
    assert_eq!(
        miner.engine.session(&f.key).unwrap().relays,
        2,
        "the 4097-byte relay is out"
    );
    assert_eq!(
        miner.stats.relays_too_large.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counter(
            &telemetry.render_metrics(),
            "ha_miner_relays_rejected_total",
            "too_large_to_prove"
        ),
        Some(1)
    );
}

/// The miner of the fixture's session (relays 0..5) with `config`, on a node that charges `minimum` (app.toml
/// `minimum-gas-prices`) and answers its `Config` query or not, after the one step at `claim_open` that sends the
/// claim and the block after it: the claim on chain, if any.
async fn claim_on_a_node_charging(
    minimum: &str,
    config_answers: bool,
    config: MinerConfig,
) -> (Fixture, Option<crate::protocol::wire::Claim>) {
    let f = fixture().await;
    f.chain.set_minimum_gas_prices(minimum).unwrap();
    f.chain.state().node_config_unavailable = !config_answers;
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config);
    ingest_until_claim_open(&f, &plain, &mut miner).await;
    miner.step().await.unwrap();
    f.chain.produce_block();
    let claim = f.client.claim(&f.key.session_id, &f.supplier).await.unwrap();
    (f, claim)
}

/// The fee of every claim tx the chain included, with its gas limit.
fn included_fees(chain: &SimChain) -> Vec<(u128, u64)> {
    use crate::chain::tx::{AuthInfo, TxRaw};
    chain
        .state()
        .txs
        .values()
        .filter(|t| t.code == 0)
        .map(|t| {
            let raw = TxRaw::decode(t.tx.as_slice()).unwrap();
            let fee = AuthInfo::decode(raw.auth_info_bytes.as_slice()).unwrap().fee.unwrap();
            let paid = fee.amount.iter().map(|c| c.amount.parse::<u128>().unwrap()).sum();
            (paid, fee.gas_limit)
        })
        .collect()
}

/// A node whose minimum gas price (poktroll's `pocketd init` default, `1upokt`) is a million times the
/// configured one refuses the configured fee at CheckTx; the miner reads the node's price from its `Config`
/// query and pays it, so the claim lands at its first send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_pays_the_node_minimum_gas_price_read_from_the_node() {
    let (f, claim) = claim_on_a_node_charging("1upokt", true, config("a")).await;
    assert!(claim.is_some(), "claim included: {:?}", f.chain.records());
    let fees = included_fees(&f.chain);
    assert_eq!(fees.len(), 1);
    let (paid, gas_limit) = fees[0];
    assert_eq!(paid, u128::from(gas_limit), "1upokt × the gas limit");
}

/// When the node's `Config` cannot be read (a gateway that forwards only some services), the first send at the
/// configured price is refused with code 13 and the SDK's "required:" fee; the miner sends again at that fee in
/// the same attempt, so the claim is in the next block, not a block (or a window) later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fee_refused_at_check_tx_is_sent_again_at_the_required_fee_in_the_same_attempt() {
    let (f, claim) = claim_on_a_node_charging("0.01upokt", false, config("a")).await;
    assert!(claim.is_some(), "claim included: {:?}", f.chain.records());
    let (paid, gas_limit) = included_fees(&f.chain)[0];
    assert_eq!(paid, u128::from(gas_limit).div_ceil(100), "ceil(0.01 × gas limit)");
}

/// A node that asks more than `transaction.max_gas_price` is not paid: neither from its `Config` nor from its
/// refusal (a misconfigured or hostile node cannot name the fee); nothing reaches a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_asking_more_than_max_gas_price_is_not_paid() {
    for config_answers in [true, false] {
        let (f, claim) = claim_on_a_node_charging("11upokt", config_answers, config("a")).await;
        assert!(claim.is_none(), "config answers: {config_answers}");
        assert_eq!(included_fees(&f.chain), vec![], "config answers: {config_answers}");
    }
}

/// Two relays each under the per-relay limit, side by side in the trie: a proof of either carries the other whole
/// as `SiblingData` (the sibling is a leaf), which would make a proof no node takes and the supplier slashed. The
/// proof message leaves `SiblingData` out exactly then; it still verifies as the chain verifies it (§5.4 step 17,
/// `SiblingData` checked only when present) and fits the tx. A small proof keeps it, as poktroll's prover sends it.
#[test]
fn a_proof_too_large_with_its_sibling_data_goes_without_it_and_still_verifies() {
    use prost::Message as _;
    let max_tx_bytes = 200 * 1024;
    let relay_limit = max_tx_bytes - crate::smst::MAX_PROOF_OVERHEAD_BYTES;
    let mut trie = crate::smst::Smst::new(storage::MemoryNodeStore::new());
    trie.insert_relay(&[1u8; 32], &vec![0xaa; relay_limit], 10);
    trie.insert_relay(&[2u8; 32], &vec![0xbb; relay_limit], 10);
    let root = trie.root();
    let proof = trie.prove_closest(&[0u8; 32]).unwrap();
    assert!(
        proof.sibling_data.as_ref().is_some_and(|s| s.len() > relay_limit),
        "the sibling is the other relay"
    );
    let message = super::submit::proof_message("pokt1sup", None, &proof, max_tx_bytes);
    assert!(
        message.encoded_len() + 512 <= max_tx_bytes,
        "{} bytes",
        message.encoded_len()
    );
    let sent = crate::protocol::wire::MsgSubmitProof::decode(message.value.as_slice()).unwrap();
    let verified = crate::smst::verify_compact_closest_proof(&sent.proof, &root).unwrap();
    assert_eq!(verified.sibling_data, None);
    assert_eq!(verified.closest_value_hash, proof.closest_value_hash);

    // Small relays: the proof goes as poktroll's prover makes it, SiblingData included.
    let mut small = crate::smst::Smst::new(storage::MemoryNodeStore::new());
    small.insert_relay(&[1u8; 32], b"one", 10);
    small.insert_relay(&[2u8; 32], b"two", 10);
    let root = small.root();
    let proof = small.prove_closest(&[0u8; 32]).unwrap();
    let message = super::submit::proof_message("pokt1sup", None, &proof, max_tx_bytes);
    let sent = crate::protocol::wire::MsgSubmitProof::decode(message.value.as_slice()).unwrap();
    let verified = crate::smst::verify_compact_closest_proof(&sent.proof, &root).unwrap();
    assert!(verified.sibling_data.is_some());
}

/// With the smallest `gas_adjustment` allowed (1.1), the claim still fits its gas limit: the draft is simulated
/// with a non-zero fee, so the estimate includes the fee transfer the block charges (the SDK skips it for a zero
/// fee; the simulator models that, and a tx short of gas fails in its block with its fee paid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_fits_its_gas_limit_at_the_smallest_gas_adjustment() {
    let config = MinerConfig {
        gas_adjustment: crate::config::MIN_GAS_ADJUSTMENT,
        ..config("a")
    };
    let (f, claim) = claim_on_a_node_charging("", true, config).await;
    assert_eq!(
        f.chain.state().last_simulated_fee,
        Some(1),
        "the draft was simulated with a non-zero fee"
    );
    let failed: Vec<_> = f.chain.state().txs.values().map(|t| (t.code, t.log.clone())).collect();
    assert!(claim.is_some(), "claim included; txs: {failed:?}");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 0);
}

#[path = "tests_rebroadcast.rs"]
mod rebroadcast;

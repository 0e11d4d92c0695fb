//! The driver against the chain simulator and the memory backend: the fixtures the driver's tests share (a
//! simulator chain serving gRPC, miners leading, claimed or confirming, relays, metric readers; a relay log
//! whose reads fail or grow, module `hooked_log`); the tests are in the child modules, one topic each.
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
use confirming::{Confirming, LaggingView};
use hooked_log::{AfterRead, Failing, hook_relay_log};

mod claim_funds;
mod confirmed_once;
mod confirming;
mod deferred_submits;
mod failing_commands;
mod fee_refusals;
mod fenced_out;
mod fixed_gas;
mod funds_monitor;
mod gas_and_fees;
mod held_past_close;
pub(super) mod hooked_log;
mod inclusion_delay;
mod ingest_between_ticks;
mod ingest_failure;
mod ingest_freeze;
mod ingest_round;
mod ingest_weights;
mod kept_partial;
mod kept_txs;
mod keyless_sessions;
mod keyless_tombstones;
mod lagging_node;
mod late_relays;
mod leadership_confirmed;
mod lease_unknown;
mod losses;
mod operator_metrics;
mod partial_persist;
mod pending_funds;
mod progress;
mod proof_fee_history;
mod proof_funds;
mod proof_params;
mod proofs_by_value;
mod prune;
mod pruned;
mod pruned_unread;
mod redis_threshold;
mod refused_message_alone;
mod rejected_once;
mod removed_supplier;
mod requirement_claim;
mod requirement_fallback;
mod rolled_back_leaves;
mod root_mismatch;
mod settled;
mod settled_failover;
mod settlement_events;
mod spendable_funds;
mod split_on_refusal;
mod step_timer;
mod stop_resigns;
mod storage_rollback;
mod tip;
mod tip_before_ingest;
mod trie_oom;
mod tx_size;
mod undecodable_record;
mod unknown_outcome;
mod unknown_settlement;
mod unowned_logs;
mod unprofitable;
mod unreadable_entry;
mod unreadable_trie;
mod unrequired_proof;
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
            f.client
                .claim_at(&key.session_id, &key.supplier, None)
                .await
                .unwrap()
                .is_some(),
            "claim of {} on chain: {:?}",
            key.session_id,
            f.chain.records()
        );
    }
}

/// Asserts that the chain holds no claim of `key`'s session.
async fn assert_not_claimed(f: &Fixture, key: &SessionKey) {
    assert!(
        f.client
            .claim_at(&key.session_id, &key.supplier, None)
            .await
            .unwrap()
            .is_none(),
        "claim of {} on chain: {:?}",
        key.session_id,
        f.chain.records()
    );
}

/// Steps `miner` (its first step takes the lease, free in these tests) and asserts that it leads.
async fn lead(miner: &mut Miner) {
    miner.step().await.unwrap();
    assert!(miner.engine.is_leader());
}

/// Appends `relays` to `plain`'s relay log, then steps `miner` (a leader ingests them).
async fn deliver(plain: &storage::Storage, miner: &mut Miner, relays: Vec<MinedRelay>) {
    plain.relay_log.append(relays).await.unwrap();
    miner.step().await.unwrap();
}

/// A miner "a" over `plain` with metrics (registered with `telemetry`), made the leader, that ingested relays
/// 0..5 of the fixture's session.
async fn leader_on(f: &Fixture, plain: &storage::Storage, telemetry: &crate::telemetry::Telemetry) -> Miner {
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), config("a"))
        .with_metrics(crate::miner::metrics::MinerMetrics::new(telemetry).unwrap());
    lead(&mut miner).await;
    deliver(plain, &mut miner, relays(&f.supplier, &f.header, 0..5)).await;
    assert_eq!(miner.engine.session(&f.key).unwrap().relays, 5);
    miner
}

/// Lets `miner` (a leader to be, over `plain`'s relay log) ingest relays 0..5 of the fixture's session, then
/// produces blocks up to the claim window's open (the miner has not seen it yet); returns the session schedule.
async fn ingest_until_claim_open(
    f: &Fixture,
    plain: &storage::Storage,
    miner: &mut Miner,
) -> crate::miner::lifecycle::Schedule {
    ingest_until(f, plain, miner, |s| s.claim_open).await
}

/// [`ingest_until_claim_open`], then steps `miner` block by block until it pruned the session, which must happen
/// by the block after its settlement height.
async fn ingest_until_pruned(f: &Fixture, plain: &storage::Storage, miner: &mut Miner) {
    let schedule = ingest_until_claim_open(f, plain, miner).await;
    while miner.engine.session(&f.key).is_some() {
        assert!(
            f.chain.height() <= schedule.settlement + 1,
            "pruned after the settlement height"
        );
        miner.step().await.unwrap();
        f.chain.produce_block();
    }
}

/// [`ingest_until_claim_open`], with the blocks produced up to the height `until` names in the schedule.
async fn ingest_until(
    f: &Fixture,
    plain: &storage::Storage,
    miner: &mut Miner,
    until: impl Fn(&crate::miner::lifecycle::Schedule) -> i64,
) -> crate::miner::lifecycle::Schedule {
    miner.step().await.unwrap();
    deliver(plain, miner, relays(&f.supplier, &f.header, 0..5)).await;
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    while f.chain.height() < until(&schedule) {
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
    let miner = settling_miner(&f, &plain, &telemetry, "a");
    leading_from(f, plain, telemetry, miner, relays).await
}

/// [`Leading`] on a fresh memory backend, configured by `cfg` (e.g. [`fixed_gas_config`]), reading the chain's
/// settlement events when `settlements`, with `relays` ingested.
async fn leading_configured(f: Fixture, cfg: MinerConfig, relays: Vec<MinedRelay>, settlements: bool) -> Leading {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    if settlements {
        miner = miner.with_settlements_from(f.comet.clone());
    }
    leading_from(f, plain, telemetry, miner, relays).await
}

/// `miner` (over `plain`) made the leader, then `relays` ingested: [`Leading`].
async fn leading_from(
    f: Fixture,
    plain: storage::Storage,
    telemetry: crate::telemetry::Telemetry,
    mut miner: Miner,
    relays: Vec<MinedRelay>,
) -> Leading {
    lead(&mut miner).await;
    deliver(&plain, &mut miner, relays).await;
    let schedule = miner.engine.session(&f.key).unwrap().schedule;
    Leading {
        f,
        miner,
        plain,
        telemetry,
        schedule,
    }
}

impl Leading {
    /// Produces a block and steps the miner after it, until the chain is past `height`.
    async fn blocks_through(&mut self, height: i64) {
        while self.f.chain.height() <= height {
            self.f.chain.produce_block();
            self.miner.step().await.unwrap();
        }
    }

    /// Produces blocks (stepping the miner after each) up to the proof seed block, and asserts that the chain
    /// required the fixture session's proof there and that it is not sent before `proof_open`.
    async fn until_proof_seed(&mut self) {
        self.blocks_through(self.schedule.proof_open - 2).await;
        let record = self.miner.engine.session(&self.f.key).unwrap();
        assert_eq!(
            (record.state, record.proof_required),
            (crate::miner::lifecycle::State::Proving, Some(true)),
            "required at the seed block"
        );
        assert!(record.proof_sent_at.is_empty(), "not sent before proof_open");
    }
}

/// A miner configured by `cfg`, with metrics, on a fresh memory backend, that ingested `relays` and relays 0..5 of
/// the fixture's session as [`ingest_until_claim_open`] does, the chain at the claim window's opening (the miner
/// has not seen it yet): [`Leading`].
async fn at_claim_open(f: Fixture, cfg: MinerConfig, relays: Vec<MinedRelay>) -> Leading {
    let telemetry = crate::telemetry::Telemetry::new().unwrap();
    let plain = MemoryBackend::new().storage();
    let mut miner = Miner::new(f.client.clone(), plain.clone(), f.keyring.clone(), cfg)
        .with_metrics(crate::miner::metrics::MinerMetrics::new(&telemetry).unwrap());
    if !relays.is_empty() {
        plain.relay_log.append(relays).await.unwrap();
    }
    let schedule = ingest_until_claim_open(&f, &plain, &mut miner).await;
    Leading {
        f,
        miner,
        plain,
        telemetry,
        schedule,
    }
}

/// [`config`] "a" with a fixed `transaction.gas_limit` (Simulate skipped; 0: simulated).
fn fixed_gas_config(gas_limit: u64) -> MinerConfig {
    MinerConfig {
        gas_limit,
        ..config("a")
    }
}

/// [`genesis_with_apps`] where every claim needs a proof (probability 1, threshold 0).
fn proving_genesis(apps: &[&str]) -> Genesis {
    let mut g = genesis_with_apps(apps);
    g.proof_params.proof_request_probability = 1.0;
    g.proof_params.proof_requirement_threshold_upokt = 0;
    g
}

/// Two sessions of the fixture's supplier whose proofs are both required (a [`proving_genesis`] with `app2`), in
/// the order of their session ids (the order the engine hands them over): `miner` (over `plain`, with metrics on
/// `telemetry`) leads, ingests `counts[i]` signed relays of the i-th session, and steps block by block up to the
/// block before `proof_open`, where both claims are on chain and no proof is sent yet. Returns [`Leading`] (the
/// schedule both sessions share) and their keys.
async fn two_proofs_due(
    f: Fixture,
    plain: storage::Storage,
    telemetry: crate::telemetry::Telemetry,
    mut miner: Miner,
    counts: [u64; 2],
) -> (Leading, [SessionKey; 2]) {
    lead(&mut miner).await;
    let mut sessions = Vec::new();
    for app in ["app", "app2"] {
        let (header, key) = app_session(&f, app).await;
        sessions.push((header, key, app));
    }
    sessions.sort_by(|a, b| a.1.session_id.cmp(&b.1.session_id));
    for ((header, _, app), n) in sessions.iter().zip(counts) {
        let relays = signed_relays(&f, header, app, 0..n, 100);
        plain.relay_log.append(relays).await.unwrap();
    }
    miner.step().await.unwrap();
    let keys = [sessions[0].1.clone(), sessions[1].1.clone()];
    let schedule = miner.engine.session(&keys[0]).unwrap().schedule;
    let mut t = Leading {
        f,
        miner,
        plain,
        telemetry,
        schedule,
    };
    t.blocks_through(schedule.proof_open - 2).await;
    assert_claimed(&t.f, &[&keys[0], &keys[1]]).await;
    for key in &keys {
        let record = t.miner.engine.session(key).unwrap();
        assert_eq!(record.proof_required, Some(true));
        assert!(record.proof_sent_at.is_empty(), "no proof sent before proof_open");
    }
    (t, keys)
}

/// Produces blocks, stepping `miner` after each, up to two blocks past `settlement` (the sessions settled and
/// pruned), and asserts that no tx failed in its block.
async fn settle_with_no_failed_tx(chain: &SimChain, miner: &mut Miner, settlement: i64) {
    while chain.height() <= settlement + 2 {
        chain.produce_block();
        miner.step().await.unwrap();
    }
    assert_eq!(
        failed_in_block(chain),
        Vec::<String>::new(),
        "no tx failed in its block"
    );
}

/// The proof validation status of `key`'s claim on chain, settled or not (`None`: no such claim).
fn proof_status(chain: &SimChain, key: &SessionKey) -> Option<i32> {
    let s = chain.state();
    let id = (key.session_id.clone(), key.supplier.clone());
    s.settled
        .get(&id)
        .or_else(|| s.claims.get(&id))
        .map(|e| e.claim.proof_validation_status)
}

/// The logs of the txs that failed in their block (a fee paid for nothing).
fn failed_in_block(chain: &SimChain) -> Vec<String> {
    chain
        .state()
        .txs
        .values()
        .filter(|r| r.code != 0)
        .map(|r| r.log.clone())
        .collect()
}

/// The bytes of `key`'s session record as stored.
async fn stored_data(plain: &storage::Storage, key: &SessionKey) -> Vec<u8> {
    plain
        .sessions
        .get(&key.supplier, &key.session_id)
        .await
        .unwrap()
        .unwrap()
        .data
}

/// Asserts that the chain validated the proof of `key`'s claim (settled claims leave the chain's state; the
/// simulator keeps them apart with their proof's status).
fn assert_proof_validated(f: &Fixture, key: &SessionKey) {
    let status = f
        .chain
        .state()
        .settled
        .get(&(key.session_id.clone(), key.supplier.clone()))
        .map(|e| e.claim.proof_validation_status);
    assert_eq!(
        status,
        Some(crate::protocol::wire::ClaimProofStatus::Validated as i32),
        "{:?}",
        f.chain.records()
    );
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
    let Leading {
        f,
        mut miner,
        plain,
        telemetry,
        schedule,
    } = at_claim_open(fixture_on(genesis).await, config("a"), Vec::new()).await;
    miner.step().await.unwrap();
    assert_eq!(
        miner.engine.session(&f.key).unwrap().claim_sent_at.len(),
        1,
        "claim sent"
    );
    f.chain.produce_block();
    let on_chain = f
        .client
        .claim_at(&f.key.session_id, &f.supplier, None)
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

#[path = "tests_rebroadcast.rs"]
mod rebroadcast;

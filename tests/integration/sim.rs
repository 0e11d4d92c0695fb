//! The chain client against a running simulator node over real sockets (issue 5): gRPC queries and CometBFT RPC
//! agree (the block-ID hash seeds session ids and proof paths), a claim tx broadcast over CometBFT is included and
//! found by `tx?hash=`, ordered txs recover from a stale sequence, and a block subscription continues across a
//! node restart on the same ports without missing or repeating a height. Waits are deadlines on events, never
//! sleeps as synchronisation.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use k256::ecdsa::SigningKey;
use relay_miner::chain::comet::{BlockStream, CometClient, SubscribeConfig};
use relay_miner::chain::gauges::CacheGauges;
use relay_miner::chain::query::ChainClient;
use relay_miner::chain::sequence::{AccountSequence, SequenceError, Sequencer};
use relay_miner::chain::tx::{Ordering, Timestamp, TxPlan, build_signed_tx};
use relay_miner::protocol::session::{SessionGrid, SessionWindows};
use relay_miner::protocol::wire;
use relay_miner::sim::chain::genesis::*;
use relay_miner::sim::chain::{SimChain, actor, block_hash};
use relay_miner::sim::{BlockTimer, SimNode, SimNodeConfig};

const DEADLINE: Duration = Duration::from_secs(20);
const CHAIN_ID: &str = "pocket-sim";

fn key_hex(label: &str) -> String {
    hex::encode(relay_miner::protocol::sha256(label.as_bytes()))
}

fn genesis() -> Genesis {
    Genesis {
        chain_id: CHAIN_ID.into(),
        block_time_ms: 50,
        shared_params: GenesisSharedParams::default(),
        proof_params: GenesisProofParams::default(),
        num_suppliers_per_session: 15,
        services: vec![GenesisService {
            id: "anvil".into(),
            compute_units_per_relay: 10,
            difficulty_target_hex: None,
        }],
        applications: vec![GenesisApplication {
            key_hex: key_hex("it-app"),
            stake_upokt: 1_000_000,
            services: vec!["anvil".into()],
            delegate_to: vec![0],
        }],
        gateways: vec![GenesisGateway {
            key_hex: key_hex("it-gateway"),
            stake_upokt: 1_000_000,
        }],
        suppliers: vec![GenesisSupplier {
            key_hex: key_hex("it-supplier"),
            stake_upokt: 1_000_000,
            balance_upokt: 1_000_000_000,
            services: vec![GenesisSupplierService {
                service_id: "anvil".into(),
                url: "http://127.0.0.1:1".into(),
            }],
        }],
    }
}

async fn manual_node() -> SimNode {
    let chain = SimChain::new(genesis()).unwrap();
    let config = SimNodeConfig {
        blocks: BlockTimer::Manual,
        ..SimNodeConfig::default()
    };
    SimNode::start(chain, config).await.unwrap()
}

fn clients(node: &SimNode) -> (ChainClient, CometClient) {
    (
        ChainClient::new(&node.grpc_url(), Duration::from_secs(5)).unwrap(),
        CometClient::new(&node.rpc_url()).unwrap(),
    )
}

fn supplier() -> (SigningKey, String) {
    let (key, address, _) = actor(&key_hex("it-supplier")).unwrap();
    (key, address)
}

fn advance_to(chain: &SimChain, height: i64) {
    while chain.height() < height {
        chain.produce_block();
    }
}

/// Polls `probe` until it yields a value or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn next(stream: &mut BlockStream) -> relay_miner::chain::comet::BlockInfo {
    tokio::time::timeout(DEADLINE, stream.recv())
        .await
        .expect("no block before the deadline")
        .expect("subscription ended")
}

/// A claim message of `supplier` for `header` with a root whose sum is `count` × 10 compute units.
fn claim(supplier: &str, header: &wire::SessionHeader, count: u64) -> wire::Any {
    let mut root = vec![0xab; 32];
    root.extend_from_slice(&(count * 10).to_be_bytes());
    root.extend_from_slice(&count.to_be_bytes());
    wire::Any::pack(
        wire::MSG_CREATE_CLAIM_TYPE_URL,
        &wire::MsgCreateClaim {
            supplier_operator_address: supplier.to_string(),
            session_header: Some(header.clone()),
            root_hash: root,
        },
    )
}

fn plan(messages: Vec<wire::Any>, memo: &str, ordering: Ordering, account_number: u64) -> TxPlan {
    TxPlan {
        messages,
        memo: memo.into(),
        gas_limit: 500_000,
        fee_amount: 1,
        fee_denom: "upokt".into(),
        ordering,
        chain_id: CHAIN_ID.into(),
        account_number,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_cometbft_serve_the_same_chain() {
    let node = manual_node().await;
    let (grpc, comet) = clients(&node);
    advance_to(node.chain(), 7);

    let status = comet.status().await.unwrap();
    assert_eq!(status.network, CHAIN_ID);
    assert_eq!(status.latest_block_height, 7);
    let latest = grpc.latest_block().await.unwrap();
    assert_eq!(latest.height, 7);
    assert_eq!(status.latest_block_hash.map(|h| h.to_vec()), Some(latest.hash.clone()));
    for h in 1..=7 {
        let over_grpc = grpc.block(h).await.unwrap();
        let over_comet = comet.block(h).await.unwrap();
        assert_eq!(over_comet.hash.to_vec(), over_grpc.hash, "block-ID hash of {h}");
        assert_eq!(over_comet.hash, block_hash(CHAIN_ID, h));
        assert_eq!(
            (over_comet.time.seconds, i64::from(over_comet.time.nanos)),
            (over_grpc.time.seconds, i64::from(over_grpc.time.nanos)),
        );
        assert_eq!(over_comet.chain_id, CHAIN_ID);
    }
    let not_yet = comet.block(8).await.unwrap_err();
    assert!(not_yet.is_height_not_available(), "{not_yet}");

    // Queries.
    let (_, app, _) = actor(&key_hex("it-app")).unwrap();
    let (_, supplier) = supplier();
    let session = grpc.session(&app, "anvil", 7).await.unwrap();
    let header = session.header.clone().unwrap();
    assert_eq!(header.session_start_block_height, 1);
    assert!(session.suppliers.iter().any(|s| s.operator_address == supplier));
    let application = grpc.application(&app).await.unwrap().unwrap();
    assert_eq!(application.delegatee_gateway_addresses.len(), 1);
    assert!(grpc.application("pokt1nobody").await.unwrap().is_none());
    assert_eq!(grpc.compute_units_at("anvil", 7).await.unwrap(), 10);
    assert_eq!(grpc.difficulty_target_at("anvil", 7).await.unwrap().len(), 32);
    let shared = grpc.shared_params_at(7).await.unwrap();
    assert_eq!(shared.num_blocks_per_session, 10);
    assert!(grpc.account_pubkey(&supplier).await.unwrap().is_some());
    assert_eq!(grpc.account(&supplier).await.unwrap().sequence, 0);

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_broadcast_over_cometbft_is_included_and_found_by_hash() {
    let node = manual_node().await;
    let chain = node.chain().clone();
    let (grpc, comet) = clients(&node);
    let (key, supplier) = supplier();
    let (_, app, _) = actor(&key_hex("it-app")).unwrap();
    advance_to(&chain, 2);
    let header = grpc.session(&app, "anvil", 2).await.unwrap().header.unwrap();
    let shared = grpc.shared_params_at(2).await.unwrap();
    let windows = SessionWindows::new(&shared, header.session_end_block_height).unwrap();
    // The tx is included in the next block, which must be inside the claim window.
    advance_to(&chain, windows.claim_open);

    // CheckTx refuses bytes that are not a tx, with the SDK's decode code, and keeps nothing.
    let garbage = comet.broadcast_tx_sync(&[0xff, 0xff, 0x01]).await.unwrap();
    assert_eq!(
        (garbage.code, garbage.codespace.as_str()),
        (2, "sdk"),
        "{}",
        garbage.log
    );

    let latest = comet.latest_block().await.unwrap();
    let account = grpc.account(&supplier).await.unwrap();
    let ordering = Ordering::unordered(
        Timestamp {
            seconds: latest.time.seconds,
            nanos: i32::try_from(latest.time.nanos).unwrap(),
        },
        120,
    );
    let signed = build_signed_tx(
        &key,
        &plan(
            vec![claim(&supplier, &header, 3)],
            "claim",
            ordering,
            account.account_number,
        ),
    )
    .unwrap();
    let admitted = comet.broadcast_tx_sync(&signed.tx_bytes).await.unwrap();
    assert_eq!(admitted.code, 0, "CheckTx: {}", admitted.log);
    assert_eq!(hex::encode_upper(admitted.hash), signed.hash);
    // Mempool only: not found until a block includes it.
    assert_eq!(comet.tx(&admitted.hash).await.unwrap(), None);
    let dup = comet.broadcast_tx_sync(&signed.tx_bytes).await.unwrap_err();
    assert!(dup.to_string().contains("tx already exists in cache"), "{dup}");

    let included_at = chain.produce_block();
    let result = eventually("the claim tx to be found by hash", || {
        let comet = comet.clone();
        async move { comet.tx(&admitted.hash).await.unwrap() }
    })
    .await;
    assert_eq!(
        (result.height, result.index, result.code),
        (included_at, 0, 0),
        "{}",
        result.log
    );
    let block = comet.block(included_at).await.unwrap();
    assert_eq!(block.hash, block_hash(CHAIN_ID, included_at));
    let over_grpc = grpc.get_tx(&signed.hash).await.unwrap().unwrap();
    assert_eq!((over_grpc.height, over_grpc.code), (included_at, 0));
    let on_chain = grpc.claim(&header.session_id, &supplier).await.unwrap().unwrap();
    assert_eq!(on_chain.root_hash.len(), 48);
    assert!(
        chain.records().iter().all(|r| r.rejected.is_none()),
        "{:?}",
        chain.records()
    );

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_txs_recover_from_a_stale_sequence() {
    let node = manual_node().await;
    let chain = node.chain().clone();
    let (grpc, _) = clients(&node);
    let (key, supplier) = supplier();
    let (_, app, _) = actor(&key_hex("it-app")).unwrap();
    let header = grpc.session(&app, "anvil", 1).await.unwrap().header.unwrap();
    // Inside the claim window (session 1..10: [12, 16]), so the claims also pass a simulation, which runs them.
    while chain.height() < 12 {
        chain.produce_block();
    }
    // Two instances signing with the same key, each tracking the sequence on its own.
    let a = Sequencer::new(&supplier);
    let b = Sequencer::new(&supplier);
    let builds = AtomicUsize::new(0);
    let direct = |memo: &'static str| {
        let (key, supplier, header, builds) = (&key, &supplier, &header, &builds);
        move |seq: AccountSequence| {
            builds.fetch_add(1, AtomicOrdering::SeqCst);
            let ordering = Ordering::Ordered {
                sequence: seq.sequence,
                timeout_height: 0,
            };
            let p = plan(vec![claim(supplier, header, 1)], memo, ordering, seq.account_number);
            async move { Ok::<_, SequenceError>(build_signed_tx(key, &p)?.tx_bytes) }
        }
    };

    let r = a.submit(&grpc, direct("a1")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.raw_log);
    assert_eq!(a.current().await.map(|s| s.sequence), Some(1));
    chain.produce_block();
    let r = b.submit(&grpc, direct("b1")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.raw_log);
    chain.produce_block();

    // `a` still believes 1; the chain is at 2: code 32, refresh, one retry.
    builds.store(0, AtomicOrdering::SeqCst);
    let r = a.submit(&grpc, direct("a2")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.raw_log);
    assert_eq!(builds.load(AtomicOrdering::SeqCst), 2, "one rejected build, one retry");
    assert_eq!(a.current().await.map(|s| s.sequence), Some(3));
    // Consecutive txs in one block: the node's check state counts the mempool.
    let r = a.submit(&grpc, direct("a3")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.raw_log);
    let stale = chain.state().accounts[&supplier].sequence;
    assert_eq!(stale, 2, "a3 and a2 wait in the mempool");

    // `b` believes 2 while the check state expects 4: its simulation fails with the mismatch and it recovers
    // from the node's "expected 4" although the committed account still says 2.
    let with_simulation = |memo: &'static str| {
        let (key, supplier, header, grpc) = (&key, &supplier, &header, &grpc);
        move |seq: AccountSequence| {
            let ordering = Ordering::Ordered {
                sequence: seq.sequence,
                timeout_height: 0,
            };
            let p = plan(vec![claim(supplier, header, 1)], memo, ordering, seq.account_number);
            async move {
                let tx = build_signed_tx(key, &p)?.tx_bytes;
                grpc.simulate(tx.clone()).await?;
                Ok::<_, SequenceError>(tx)
            }
        }
    };
    let r = b.submit(&grpc, with_simulation("b2")).await.unwrap();
    assert_eq!(r.code, 0, "{}", r.raw_log);
    assert_eq!(b.current().await.map(|s| s.sequence), Some(5));
    chain.produce_block();
    let account = grpc.account(&supplier).await.unwrap();
    assert_eq!(account.sequence, 5, "a1, b1, a2, a3 and one of b's");

    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_subscription_continues_across_a_node_restart() {
    let chain = SimChain::new(genesis()).unwrap();
    let config = SimNodeConfig {
        blocks: BlockTimer::Every(Duration::from_millis(50)),
        ..SimNodeConfig::default()
    };
    let node = SimNode::start(chain.clone(), config).await.unwrap();
    let comet = CometClient::new(&node.rpc_url()).unwrap();
    let start = chain.height();
    let mut stream = comet.subscribe_blocks(SubscribeConfig {
        start_after: Some(start),
        channel_capacity: 8,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        poll_interval: Duration::from_millis(20),
        fetch_retry: Duration::from_millis(20),
        ..SubscribeConfig::default()
    });
    let mut expected = start + 1;
    let check = |b: relay_miner::chain::comet::BlockInfo, expected: &mut i64| {
        assert_eq!(b.height, *expected, "heights must arrive once each, in order");
        assert_eq!(Some(&b), chain.block_info(b.height).as_ref());
        *expected += 1;
    };
    for _ in 0..3 {
        check(next(&mut stream).await, &mut expected);
    }

    let restart = node.restart_config();
    let (grpc_addr, rpc_addr) = (node.grpc_addr(), node.rpc_addr());
    node.shutdown().await.unwrap();
    // The chain moves on while the node is down (as a real network does while one node restarts).
    let down_at = chain.height();
    chain.produce_block();
    chain.produce_block();
    let node = SimNode::start(chain.clone(), restart).await.unwrap();
    assert_eq!((node.grpc_addr(), node.rpc_addr()), (grpc_addr, rpc_addr));

    let target = down_at + 8;
    while expected <= target {
        check(next(&mut stream).await, &mut expected);
    }
    // The websocket comes back too (polling may have delivered the gap first).
    let stats = std::sync::Arc::clone(stream.stats());
    eventually("the websocket to reconnect", || {
        let snapshot = stats.snapshot();
        async move { (snapshot.reconnects >= 1).then_some(()) }
    })
    .await;
    while expected <= target + 3 {
        check(next(&mut stream).await, &mut expected);
    }
    // The gRPC side is back too, with the same state.
    let grpc = ChainClient::new(&node.grpc_url(), Duration::from_secs(5)).unwrap();
    let latest = grpc.latest_block().await.unwrap();
    assert!(latest.height >= target);
    node.shutdown().await.unwrap();
}

/// The client caches one session per session, not one per height: the relayer asks at the current height, and a
/// per-height cache held one copy of the session per block and application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_cached_once_per_session_whatever_the_height_asked() {
    let node = manual_node().await;
    let (grpc, _) = clients(&node);
    let grpc = std::sync::Arc::new(grpc);
    let (_, app, _) = actor(&key_hex("it-app")).unwrap();
    let grid = SessionGrid::new(&grpc.shared_params_at(1).await.unwrap()).unwrap();
    let (start, end) = (grid.session_start(1), grid.session_end(1));
    advance_to(node.chain(), end + 1);
    let first = grpc.session(&app, "anvil", start).await.unwrap();
    for h in start..=end {
        assert_eq!(grpc.session(&app, "anvil", h).await.unwrap(), first, "height {h}");
    }
    // Read as an operator does: the `ha_chain_cache_entries` gauge of a registry.
    let registry = prometheus::Registry::new();
    registry.register(Box::new(CacheGauges::new(&grpc).unwrap())).unwrap();
    let sessions = || {
        let families = registry.gather();
        let family = families.iter().find(|f| f.name() == "ha_chain_cache_entries").unwrap();
        let metric = family
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == "sessions"))
            .unwrap();
        metric.get_gauge().get_value()
    };
    assert_eq!(sessions(), 1.0);
    let next = grpc.session(&app, "anvil", end + 1).await.unwrap();
    assert_ne!(next.header, first.header);
    assert_eq!(sessions(), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_queries_find_staked_actors_and_report_unknown_ones() {
    let node = manual_node().await;
    let (grpc, _) = clients(&node);
    let (_, supplier) = supplier();
    let (_, app, _) = actor(&key_hex("it-app")).unwrap();
    let (_, gateway, _) = actor(&key_hex("it-gateway")).unwrap();
    let (_, stranger, _) = actor(&key_hex("it-nobody")).unwrap();

    let s = grpc.supplier(&supplier).await.unwrap().expect("supplier staked");
    assert_eq!(s.operator_address, supplier);
    assert!(grpc.supplier(&stranger).await.unwrap().is_none());

    let g = grpc.gateway(&gateway).await.unwrap().expect("gateway staked");
    assert_eq!(g.address, gateway);
    assert!(grpc.gateway(&stranger).await.unwrap().is_none());

    let a = grpc.application(&app).await.unwrap().expect("application staked");
    assert_eq!(a.delegatee_gateway_addresses, vec![gateway]);
    assert!(grpc.application(&stranger).await.unwrap().is_none());

    let service = grpc.service("anvil").await.unwrap().expect("service known");
    assert_eq!(service.compute_units_per_relay, 10);
    assert!(grpc.service("nope").await.unwrap().is_none());
    assert_eq!(grpc.compute_units_at("anvil", 1).await.unwrap(), 10);
}

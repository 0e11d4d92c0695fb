//! A mixed relayer fleet on one Redis relay log, with the real binary: `relay-miner run --storage redis` (its
//! relayer weighs relays with the chain's compute units per relay) and, beside it, a relayer whose cached value
//! is stale (the test appending to the same Redis streams, as a second relayer process or a Go relayer would).
//! The miner weighs every relay with the chain's value for the session (module `miner::driver::ingest`), so the
//! session's claim is the one the chain computes: accepted, every relay of both relayers in it.

use std::time::Duration;

use prost::Message as _;
use relay_miner::protocol::session::SessionWindows;
use relay_miner::protocol::wire::MinedRelayMessage;
use sha2::{Digest as _, Sha256};
use storage::redis::server::{RedisServer, ServerOptions};
use storage::redis::{RedisBackend, RedisConfig};

use crate::support::claims::{Proofs, Served, assert_claims, claimed_roots};
use crate::support::node::{NetOpts, load_until, spawn_miner, start_net, wait_up};
use crate::support::{metric_sum, scrape, wait_height};

/// Relays a stale relayer appends to one served session.
const STALE: u64 = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_relayers_compute_units_do_not_make_the_claim_refused() {
    let server = RedisServer::start(ServerOptions::durable()).unwrap();
    let url: &'static str = Box::leak(server.url().into_boxed_str());
    let net = start_net(NetOpts {
        redis_url: Some(url),
        ..NetOpts::blocks_every(500)
    })
    .await;
    let mut miner = spawn_miner(&net.config);
    wait_up(&net).await;
    let params = net.chain.state().shared.clone();
    // The next session, from its start: its first half is served before the stale relayer's appends.
    let current = SessionWindows::new(&params, net.chain.height()).unwrap();
    let first = SessionWindows::new(&params, current.end + 1).unwrap();
    wait_height(&net.chain, first.start, Duration::from_secs(30)).await;
    let mut served = Served::new();
    let mut n = 0;
    // Half the session served by the process's relayer, then the stale relayer's appends, then the rest.
    load_until(&net, (first.start + first.end + 1) / 2, &mut n, &mut served).await;
    let (supplier, session_id) = served
        .keys()
        .next()
        .cloned()
        .expect("a relay served in the first half of the session");
    let cupr = net.client.compute_units_at("anvil", first.start).await.unwrap();
    let header = {
        let apps: Vec<String> = net.chain.state().applications.keys().cloned().collect();
        let mut found = None;
        for app in apps {
            if let Ok(session) = net.client.session(&app, "anvil", first.start).await
                && session.session_id == session_id
            {
                found = session.header;
                break;
            }
        }
        found.expect("the served session's header")
    };
    let redis = RedisBackend::connect(RedisConfig::new(url)).await.unwrap();
    let stale: Vec<storage::MinedRelay> = (0..STALE)
        .map(|i| {
            let relay_bytes = format!("stale-relayer-{i}").into_bytes();
            let relay_hash = Sha256::digest(&relay_bytes).to_vec();
            let message = MinedRelayMessage {
                relay_hash: relay_hash.clone(),
                relay_bytes,
                // A value the service had before, or will have: not the chain's at the session's start.
                compute_units_per_relay: cupr + 3,
                session_id: session_id.clone(),
                session_end_height: header.session_end_block_height,
                supplier_operator_address: supplier.clone(),
                service_id: header.service_id.clone(),
                application_address: header.application_address.clone(),
                arrival_block_height: net.chain.height(),
                published_at_unix_nano: 0,
                session_start_height: header.session_start_block_height,
            };
            storage::MinedRelay {
                supplier: supplier.clone(),
                session_id: session_id.clone(),
                session_end_height: u64::try_from(header.session_end_block_height).unwrap(),
                relay_hash,
                payload: message.encode_to_vec(),
            }
        })
        .collect();
    redis.storage().relay_log.append(stale).await.unwrap();
    *served.get_mut(&(supplier.clone(), session_id.clone())).unwrap() += STALE;
    // Up to the session's last block (exclusive): every relay served is of this session.
    load_until(&net, first.end, &mut n, &mut served).await;
    wait_height(&net.chain, first.settlement + 1, Duration::from_secs(60)).await;
    let metrics = scrape(&net.metrics_url).await;
    miner.kill().unwrap();
    miner.wait().unwrap();

    let roots = claimed_roots(&net.chain);
    let claimed = assert_claims(&net.chain, &served, 0, Proofs::None);
    let key = (supplier, session_id);
    let (sum, count) = roots[&key];
    assert_eq!(count, claimed[&key]);
    assert_eq!(
        sum,
        count * cupr,
        "every relay weighs the chain's compute units per relay"
    );
    assert_eq!(
        metric_sum(&metrics, "ha_miner_relays_reweighted_total", &[]),
        STALE as f64,
        "the stale relayer's entries are counted"
    );
    drop(server);
}

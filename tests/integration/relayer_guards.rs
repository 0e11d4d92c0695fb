//! The relayer's guards against serving for nothing or for free, over real sockets with the harness of
//! [`crate::relayer`]: a session's costs (compute units, difficulty target) are read before the backend is called,
//! once per session however many relays wait; an optimistic relay is validated at its arrival height; a relay of
//! the next session waits for that session's first block; a new block of a session needs no params read.

use std::time::Duration;

use prost::Message as _;
use relay_miner::protocol::session::SessionWindows;
use relay_miner::protocol::wire::MinedRelayMessage;
use relay_miner::protocol::wire::method::{
    APPLICATION, COMPUTE_UNITS_PER_RELAY_AT_HEIGHT as COMPUTE_UNITS, RELAY_MINING_DIFFICULTY_AT_HEIGHT as DIFFICULTY,
    SHARED_PARAMS_AT_HEIGHT as PARAMS_AT_HEIGHT,
};

use crate::relayer::{ChainFault, Net, error_code, eventually};

/// Moves the chain (and the relayer's view of it) to the first block of the next session.
fn to_a_fresh_session(net: &Net) {
    let params = net.chain.state().shared.clone();
    let current = SessionWindows::new(&params, net.chain.height()).unwrap();
    net.advance(usize::try_from(current.end + 1 - net.chain.height()).unwrap());
}

/// At the first block of a fresh session, relay 1 of the optimistic service `lazy` (validated first, as a
/// session's first relay is) served and recorded; its session header.
async fn first_lazy_relay_of_a_fresh_session(net: &Net, url: &str) -> relay_miner::protocol::wire::SessionHeader {
    to_a_fresh_session(net);
    let header = net.header("lazy").await;
    let (status, _) = net.send(url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!(status, 200);
    eventually("relay 1 to be recorded", || async { net.recorded().await == 1 }).await;
    header
}

/// The sum of every sample of metric `name` whose labels contain `labels`.
pub(crate) fn metric_sum(telemetry: &relay_miner::telemetry::Telemetry, name: &str, labels: &str) -> u64 {
    telemetry
        .render_metrics()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The difficulty target is read with the compute units before the backend is called: while the chain cannot
/// answer it, a relay of a new session is refused (`chain_unavailable`) without the backend working for an answer
/// that could not be kept. Concurrent first relays of a session then share one query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_costs_are_read_before_forwarding_and_once_per_session() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    net.chain_tap.set_fault(DIFFICULTY, Some(ChainFault::Unavailable));
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (503, Some(7)), "{response:?}");
    let backend = |t| metric_sum(t, "ha_relayer_backend_requests_total", "service_id=\"anvil\"");
    assert_eq!(
        backend(&r.telemetry),
        0,
        "the backend did not work for a relay that could not be kept"
    );
    assert_eq!(net.recorded().await, 0);

    // The chain answers again, slowly: ten relays arriving together wait for one query of each cost.
    net.chain_tap
        .set_fault(DIFFICULTY, Some(ChainFault::Delay(Duration::from_millis(300))));
    net.chain_tap
        .set_fault(COMPUTE_UNITS, Some(ChainFault::Delay(Duration::from_millis(300))));
    let before = net.chain_tap.calls(DIFFICULTY);
    let relays = (0..10).map(|id| {
        let request = net.request(&header, &net.ours.1, Net::rpc(10 + id));
        let (net, url) = (&net, &r.url);
        async move { net.send(url, &request).await }
    });
    for (status, response) in futures::future::join_all(relays).await {
        assert_eq!(status, 200, "{response:?}");
    }
    assert_eq!(
        net.chain_tap.calls(DIFFICULTY),
        before + 1,
        "one difficulty query for ten relays"
    );
    // The compute units were read (and cached by the chain client) with the first attempt.
    assert_eq!(net.chain_tap.calls(COMPUTE_UNITS), 1);
    assert_eq!(net.recorded().await, 10);
    assert_eq!(backend(&r.telemetry), 10);
}

/// An optimistic relay is validated at the height it arrived at (Go's `arrivalBlockHeight`), not at whatever
/// height its background validation runs at, and the mined relay records that height: the chain moving on while
/// the relay settles changes neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_relay_is_settled_at_its_arrival_height() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    // Relay 1 at the first block of a fresh session, relay 2 one block later.
    let header = first_lazy_relay_of_a_fresh_session(&net, &r.url).await;
    net.advance(1);
    let arrival = net.chain.height();
    // Relay 2's background validation reads the application again (a new block made it stale): slowly, so the
    // chain moves on first.
    net.chain_tap
        .set_fault(APPLICATION, Some(ChainFault::Delay(Duration::from_millis(500))));
    let before = net.chain_tap.calls(APPLICATION);
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200);
    eventually("relay 2's validation to read the chain", || async {
        net.chain_tap.calls(APPLICATION) > before
    })
    .await;
    net.advance(1);
    eventually("relay 2 to be recorded", || async { net.recorded().await == 2 }).await;
    let entries = net.storage.relay_log.read(&net.ours.1, "test", 10).await.unwrap();
    let heights: Vec<i64> = entries
        .iter()
        .map(|e| {
            MinedRelayMessage::decode(e.relay.payload.as_slice())
                .unwrap()
                .arrival_block_height
        })
        .collect();
    assert_eq!(heights, vec![arrival - 1, arrival]);
}

/// A gateway whose chain view is a block ahead sends relays of the next session at its first block. Such a relay
/// waits (up to 1 s) for that block to reach the relayer and is then validated, served and mined at it; when the
/// block does not come, it is refused as `session_not_started` (18, 503: retry) without calling the backend. A
/// relay of a session starting further above the relayer's height is refused so at once, without a chain read
/// (before, it was a `session_mismatch`, 400: not retryable, so gateways sanctioned the supplier for its lag).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_of_the_next_session_waits_for_its_first_block() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    // The relayer at the block before a session's last; the chain two blocks further, at the next session's start.
    let params = net.chain.state().shared.clone();
    let current = SessionWindows::new(&params, net.chain.height()).unwrap();
    let end = if current.end > net.chain.height() {
        current.end
    } else {
        current.end + params.num_blocks_per_session as i64
    };
    net.advance(usize::try_from(end - 1 - net.chain.height()).unwrap());
    net.chain.produce_block();
    net.chain.produce_block();
    let start = net.chain.height();
    assert_eq!(start, end + 1);
    let next = net.header("anvil").await;
    assert_eq!(next.session_start_block_height, start);
    let backend = |t| metric_sum(t, "ha_relayer_backend_requests_total", "service_id=\"anvil\"");

    // Two blocks behind the gateway: not waited for (the header is not authenticated yet), refused at once as not
    // started on our view, without a chain read.
    let queries = net.chain_tap.total();
    let (status, response) = net.send(&r.url, &net.request(&next, &net.ours.1, Net::rpc(0))).await;
    assert_eq!((status, error_code(&response)), (503, Some(18)), "{response:?}");
    assert_eq!(net.chain_tap.total(), queries, "no chain read");
    // One block behind, at the session's last block: such a relay waits for the block.
    net.client.observe_height(end);
    net.height_tx.send_replace(end);

    // The block does not reach the relayer: refused after the wait, unserved.
    let (status, response) = net.send(&r.url, &net.request(&next, &net.ours.1, Net::rpc(1))).await;
    assert_eq!((status, error_code(&response)), (503, Some(18)), "{response:?}");
    assert_eq!(backend(&r.telemetry), 0);
    assert_eq!(net.recorded().await, 0);

    // It reaches the relayer while the relay waits: served and mined at the new session's first block.
    let received = |t| metric_sum(t, "ha_relayer_relays_received_total", "service_id=\"anvil\"");
    let request = net.request(&next, &net.ours.1, Net::rpc(2));
    let send = net.send(&r.url, &request);
    let deliver = async {
        eventually("the relay to arrive", || async { received(&r.telemetry) == 3 }).await;
        net.advance(0);
    };
    let ((status, response), ()) = tokio::join!(send, deliver);
    assert_eq!(status, 200, "{response:?}");
    assert_eq!(error_code(&response), None);
    assert_eq!(backend(&r.telemetry), 1);
    let entries = net.storage.relay_log.read(&net.ours.1, "test", 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    let mined = MinedRelayMessage::decode(entries[0].relay.payload.as_slice()).unwrap();
    assert_eq!(mined.arrival_block_height, start);

    // Two sessions ahead of the relayer (now at `start`) is not waited for: refused at once, without a chain read.
    let mut later = next.clone();
    later.session_start_block_height += 2 * params.num_blocks_per_session as i64;
    later.session_end_block_height += 2 * params.num_blocks_per_session as i64;
    // Signed before the clock starts: only the relayer's answer is timed, against its 1 s wait for a block.
    let request = net.request(&later, &net.ours.1, Net::rpc(3));
    let asked = std::time::Instant::now();
    let queries = net.chain_tap.total();
    let (status, response) = net.send(&r.url, &request).await;
    assert_eq!((status, error_code(&response)), (503, Some(18)), "{response:?}");
    assert_eq!(net.chain_tap.total(), queries, "no chain read");
    assert!(
        asked.elapsed() < Duration::from_millis(900),
        "not waited for: {:?}",
        asked.elapsed()
    );
}

/// The miner sends a session's claim `transaction.claim_delay_blocks` (default 1) after the claim window opens,
/// so a relay validated in the grace period whose backend answers at the window's first block is still served and
/// mined (it reaches the claim), not refused as it is with no delay (`relayer::a_relay_answered_after_the_claim_
/// window_opened_is_refused_and_not_recorded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_answered_within_the_claim_delay_is_still_mined() {
    let net = Net::new(1_000_000_000).await;
    assert_eq!(net.config.transaction.claim_delay_blocks, 1);
    let r = net.relayer().await;
    let header = net.header("gated").await;
    let params = net.chain.state().shared.clone();
    let windows = SessionWindows::new(&params, header.session_end_block_height).unwrap();
    net.advance((windows.grace_period_end - net.chain.height()).max(0) as usize);
    assert!(net.chain.height() < windows.claim_open);
    let in_flight = {
        let request = net.request(&header, &net.ours.1, Net::rpc(1));
        let (net, url) = (&net, r.url.clone());
        async move { net.send(&url, &request).await }
    };
    let open_window = async {
        tokio::time::timeout(Duration::from_secs(10), net.gate.arrived.notified())
            .await
            .expect("the relay reached the backend");
        net.advance((windows.claim_open - net.chain.height()) as usize);
        net.gate.release.add_permits(1);
    };
    let ((status, response), ()) = tokio::join!(in_flight, open_window);
    assert_eq!((status, error_code(&response)), (200, None), "{response:?}");
    assert_eq!(net.recorded().await, 1);
}

/// A relay (its request, and the response without its body) larger than `transaction.max_tx_bytes` less the proof
/// overhead could never be paid: the miner would keep it out of the claim (a proof of it fits no tx). Its length is
/// known from the request (§2.3), so the relayer refuses it before the backend as `request_too_large` (413, code
/// 11): neither served, nor mined, nor charged. Before, it was served and dropped after the backend's work, its
/// charge refunded, so it escaped the meter's bound too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_too_large_to_prove_is_refused_before_the_backend() {
    let net = Net::new(1_000_000_000).await;
    let mut config = net.config.clone();
    config.transaction.max_tx_bytes = 64 * 1024;
    assert_eq!(config.validate(), vec![]);
    let r = net.relayer_with(&config).await;
    let header = net.header("anvil").await;
    // The mined relay holds the request whole (the response without its body, §2.3): a 55 KB request is over the
    // 48 KiB left by a 64 KiB tx.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"echo","params":["{}"]}}"#,
        "x".repeat(55_000)
    )
    .into_bytes();
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, big)).await;
    assert_eq!(
        (status, error_code(&response)),
        (413, Some(11)),
        "refused: {response:?}"
    );
    assert_eq!(net.recorded().await, 0);
    let refused = metric_sum(
        &r.telemetry,
        "ha_relayer_relays_rejected_total",
        "reason=\"request_too_large\"",
    );
    assert_eq!(refused, 1);
    let forwarded = metric_sum(&r.telemetry, "ha_relayer_backend_latency_seconds_count", "");
    assert_eq!(forwarded, 0, "the backend was not called");
    assert_eq!(metric_sum(&r.telemetry, "ha_relayer_relays_mined_total", ""), 0);
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    r.relayer.meter().unwrap().sync().await;
    let consumed = net.storage.kv.get(&key).await.unwrap().unwrap_or_default();
    assert!(
        consumed.is_empty() || consumed == b"0",
        "{}",
        String::from_utf8_lossy(&consumed)
    );
    // A relay under the limit is forwarded and mined as usual.
    let (status, _) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200);
    assert_eq!(net.recorded().await, 1);
    assert_eq!(
        metric_sum(&r.telemetry, "ha_relayer_backend_latency_seconds_count", ""),
        1
    );
}

/// The shared params of a new block of the current session are the session's (x/shared changes them at session
/// starts only): no `ParamsAtHeight` read. While the node cannot answer it, relays of a known session go on at the
/// next block: eager ones are served and mined, optimistic ones served first are mined (they were served and then
/// dropped, never claimed, when that read failed: work done for nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_block_of_the_session_needs_no_params_read() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    // The first block of a fresh session: relays there, more one block later.
    to_a_fresh_session(&net);
    let (eager, lazy) = (net.header("anvil").await, net.header("lazy").await);
    for header in [&eager, &lazy] {
        let (status, _) = net.send(&r.url, &net.request(header, &net.ours.1, Net::rpc(1))).await;
        assert_eq!(status, 200);
    }
    eventually("both relays to be recorded", || async { net.recorded().await == 2 }).await;
    net.advance(1);
    net.chain_tap.set_fault(PARAMS_AT_HEIGHT, Some(ChainFault::Unavailable));
    let before = net.chain_tap.calls(PARAMS_AT_HEIGHT);
    for header in [&eager, &lazy] {
        let (status, response) = net.send(&r.url, &net.request(header, &net.ours.1, Net::rpc(2))).await;
        assert_eq!(status, 200, "{response:?}");
    }
    eventually("the next block's relays to be recorded", || async {
        net.recorded().await == 4
    })
    .await;
    assert_eq!(net.chain_tap.calls(PARAMS_AT_HEIGHT), before, "no params read");
    assert_eq!(
        metric_sum(
            &r.telemetry,
            "ha_relayer_validation_failures_total",
            "reason=\"chain_unavailable\""
        ),
        0
    );
}

/// A relay served first (optimistic mode) whose background validation cannot read the chain (here: a grace-period
/// relay of the last session, whose validation reads the new session's params, while the node is out) is
/// validated again with growing pauses once the node answers, and mined: given up at once, it was served for
/// nothing (never claimed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimistic_relay_is_mined_once_the_chain_answers_again() {
    let net = Net::new(1_000_000_000).await;
    let r = net.relayer().await;
    let header = first_lazy_relay_of_a_fresh_session(&net, &r.url).await;
    // The next session's first block: relay 2 of the last session is within its grace period.
    net.advance(usize::try_from(header.session_end_block_height + 1 - net.chain.height()).unwrap());
    net.chain_tap.set_fault(PARAMS_AT_HEIGHT, Some(ChainFault::Unavailable));
    let (status, response) = net.send(&r.url, &net.request(&header, &net.ours.1, Net::rpc(2))).await;
    assert_eq!(status, 200, "served first: {response:?}");
    let retries = || {
        metric_sum(
            &r.telemetry,
            "ha_relayer_optimistic_chain_retries_total",
            "service_id=\"lazy\"",
        )
    };
    eventually("the validation to be tried again", || async { retries() >= 1 }).await;
    assert_eq!(net.recorded().await, 1);
    net.chain_tap.set_fault(PARAMS_AT_HEIGHT, None);
    eventually("relay 2 to be recorded", || async { net.recorded().await == 2 }).await;
    assert_eq!(
        metric_sum(
            &r.telemetry,
            "ha_relayer_validation_failures_total",
            "reason=\"chain_unavailable\""
        ),
        0
    );
}

//! A gateway that disconnects after the backend answered, while its relay's durable append is held, over real
//! sockets with the harness of [`crate::relayer`] on the memory backend (whose writes a test can stall). hyper
//! drops the relay's handler then; the relay is handed to the relay log all the same and the miner will claim
//! it, so its meter charge stays committed and it counts as mined and served: what is charged and counted
//! matches the relay log. Both append paths: the batching appender (remote-like backends) and the direct one
//! (backends that group-commit appends themselves, as redb; `Faults::coalesce_appends`).

use std::time::Duration;

use relay_miner::protocol::relay;

use crate::relayer::{Net, eventually, metric, post_raw};

async fn abandoned_during_the_durable_append_stays_mined_and_charged(direct: bool) {
    let backend = storage::MemoryBackend::new();
    backend.faults().coalesce_appends(direct);
    let mut net = Net::new(1_000_000_000).await;
    net.storage = backend.storage();
    // No meter sync on its own (its KV writes would be stalled too): synced by hand below.
    net.config.relay_meter.sync_interval_ms = 3_600_000;
    assert!(net.config.relay_log.durable_ack);
    let r = net.relayer().await;
    let header = net.header("anvil").await;
    let body = relay::encode_relay_request(&net.request(&header, &net.ours.1, Net::rpc(1)));

    backend.faults().stall_writes();
    let gateway = post_raw(&r.url, &body).await;
    // Validated, charged, answered by the backend: its append (the only write on the way) is held.
    tokio::time::timeout(Duration::from_secs(10), backend.faults().wait_stalled(1))
        .await
        .expect("the relay's append is held");
    let in_flight = |t| metric(t, "ha_relayer_request_body_bytes_in_flight");
    assert!(in_flight(&r.telemetry) > 0, "the handler waits for the durable append");
    let reserved = in_flight(&r.telemetry);
    drop(gateway);
    // hyper dropped the handler while the append is held: the rest of its work runs in a task of its own.
    eventually("the abandoned handler to be dropped", || async {
        r.relayer.detached_relays() == 1
    })
    .await;
    assert_eq!(net.recorded().await, 0, "still held");
    // That work keeps the request's body bytes in the budget (what bounds work left behind by gateways).
    assert_eq!(
        in_flight(&r.telemetry),
        reserved,
        "the detached work holds its body bytes"
    );

    backend.faults().release_writes();
    eventually("the relay to reach the relay log", || async {
        net.recorded().await == 1
    })
    .await;
    // What a shutdown waits for: the settlement of a relay whose handler was dropped.
    r.relayer.drain_settlements().await;
    assert_eq!(r.relayer.detached_relays(), 0);
    assert_eq!(in_flight(&r.telemetry), 0, "the body bytes are released with the work");
    let meter = r.relayer.meter().unwrap();
    meter.sync().await;
    let key = format!("meter:{}:{}:consumed", header.session_id, net.ours.1);
    assert_eq!(
        net.storage.kv.get(&key).await.unwrap(),
        Some(b"10".to_vec()),
        "the relay in the log stays charged (10 compute units)"
    );
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relay_meter_consumptions_total{result=\"refunded\",service_id=\"anvil\"}"
        ),
        0,
        "nothing was refunded"
    );
    assert_eq!(
        metric(&r.telemetry, "ha_relayer_relays_mined_total{service_id=\"anvil\"}"),
        1
    );
    assert_eq!(
        metric(
            &r.telemetry,
            "ha_relayer_relays_served_total{rpc_type=\"jsonrpc\",service_id=\"anvil\",status_code=\"200\"}"
        ),
        1,
        "{}",
        r.telemetry.render_metrics()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_disconnecting_during_a_batched_durable_append_leaves_its_relay_mined_and_charged() {
    abandoned_during_the_durable_append_stays_mined_and_charged(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_disconnecting_during_a_direct_durable_append_leaves_its_relay_mined_and_charged() {
    abandoned_during_the_durable_append_stays_mined_and_charged(true).await;
}

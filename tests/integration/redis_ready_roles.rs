//! Redis mode with real processes: an alarm that concerns the miner alone (here a Go miner started beside our
//! leading miner) leaves a `relay-miner run` process's `/ready` at 200, the reason listed in its body and
//! answered by `/ready?component=miner`, so its relayer stays in its load balancer's rotation; a miner-only
//! process (`relay-miner miner`) answers 503 (node module `miner_readiness`).

use std::time::Duration;

use storage::redis::server::{RedisServer, ServerOptions};

use crate::support::cluster::{Cluster, Env, NodeOpts, Proc, node_config, start_env, tail};
use crate::support::{CLUSTER_TESTS, free_port, http_get_status, metric_sum, poll, raft_block_ms, scrape};

/// Short leases: renewals (which see a Go miner) every second.
const LEADER_TTL_SECONDS: u64 = 4;

/// The Go miner replica this test plays: its claimer's registration and heartbeat (`spec/go-redis-layout.md`).
const GO_INSTANCE: &str = "go-host-9";

/// Node `id` running `command` on the Redis at `url` under instance name `node-{id}`.
fn redis_node(env: &Env, id: u64, url: &str, command: &'static str) -> Proc {
    let opts = NodeOpts {
        level: "warn,relay_miner::node=info",
        peers: &[],
        raft_extra: &[],
    };
    let mut proc = node_config(env, id, free_port(), &opts);
    let text = std::fs::read_to_string(&proc.config).unwrap();
    let text = text.replacen("  mode: embedded\n", "  mode: redis\n", 1).replacen(
        "  raft:\n",
        &format!(
            "  redis:\n    url: {url}\n    consumer_name: node-{id}\n    leader_ttl_seconds: {LEADER_TTL_SECONDS}\n    \
             heartbeat_rate_seconds: 1\n  raft:\n"
        ),
        1,
    );
    assert!(text.contains("mode: redis") && text.contains("consumer_name"), "{text}");
    std::fs::write(&proc.config, text).unwrap();
    proc.command = command;
    proc
}

fn go_miner_starts(server: &RedisServer) {
    server.command(&["SADD", "ha:miner:active", GO_INSTANCE]).unwrap();
    let heartbeat = format!("ha:miner:instance:{GO_INSTANCE}");
    server
        .command(&["SET", &heartbeat, "1765000000000000000", "PX", "600000"])
        .unwrap();
}

fn go_miner_stops(server: &RedisServer) {
    server
        .command(&["DEL", &format!("ha:miner:instance:{GO_INSTANCE}")])
        .unwrap();
    server.command(&["SREM", "ha:miner:active", GO_INSTANCE]).unwrap();
}

/// Polls `url` until its answer satisfies `want` (30 s); the last answer and node `id`'s log otherwise.
async fn ready_until(cluster: &Cluster, id: u64, url: &str, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let mut last = None;
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some((status, body)) = http_get_status(url).await {
            if want(status, &body) {
                return (status, body);
            }
            last = Some((status, body));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url}: last answer {last:?} within {limit:?}\n{}",
            tail(&cluster.proc(id).log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_miner_beside_our_leader_leaves_a_run_process_ready_and_fails_a_miner_process() {
    let _exclusive = CLUSTER_TESTS.lock().await;
    let server = RedisServer::start(ServerOptions::default()).unwrap();
    let env = start_env(raft_block_ms(), 1.0).await;
    let mut cluster = Cluster::default();
    cluster.add(redis_node(&env, 1, &server.url(), "run"));
    cluster.add(redis_node(&env, 2, &server.url(), "miner"));

    // `relay-miner run`: it leads and is ready; a Go miner starts beside it.
    cluster.start(1).await;
    cluster.miner_leads(1, Duration::from_secs(30)).await;
    let ready = cluster.proc(1).ready_url.clone();
    ready_until(&cluster, 1, &ready, |status, _| status == 200).await;
    go_miner_starts(&server);
    let miner_url = format!("{ready}?component=miner");
    let (_, body) = ready_until(&cluster, 1, &miner_url, |status, body| {
        status == 503 && body.contains("redis_go_miner_beside_leader")
    })
    .await;
    assert!(body.starts_with("miner: redis_go_miner_beside_leader: "), "{body}");
    assert!(body.contains(GO_INSTANCE), "{body}");
    // The relayer stays in rotation: `/ready` 200, the miner's alarm listed.
    let (status, body) = poll("/ready answers", Duration::from_secs(30), || http_get_status(&ready)).await;
    assert_eq!(
        status, 200,
        "the Go miner's alarm took the relayer out of rotation: {body}"
    );
    assert!(body.starts_with("ready\n"), "{body}");
    assert!(
        body.contains("advisory miner: redis_go_miner_beside_leader: "),
        "{body}"
    );
    let metrics = scrape(&cluster.proc(1).metrics_url).await;
    assert_eq!(
        metric_sum(&metrics, "ha_component_ready", &[("component", "miner")]),
        0.0
    );
    assert_eq!(
        metric_sum(&metrics, "ha_storage_redis_go_miner_beside_leader", &[]),
        1.0
    );
    assert_eq!(
        metric_sum(&metrics, "ha_miner_leader_status", &[]),
        1.0,
        "it keeps leading"
    );

    // The Go miner stops: the next renewal clears the alarm.
    go_miner_stops(&server);
    ready_until(&cluster, 1, &miner_url, |status, _| status == 200).await;
    let exit = cluster.terminate(1, Duration::from_secs(30)).await;
    assert!(
        exit.success(),
        "node 1 stopped with {exit}\n{}",
        tail(&cluster.proc(1).log)
    );

    // `relay-miner miner`: it leads and is ready; with a Go miner beside it, it is not ready at all.
    cluster.start(2).await;
    cluster.miner_leads(2, Duration::from_secs(30)).await;
    let ready = cluster.proc(2).ready_url.clone();
    ready_until(&cluster, 2, &ready, |status, _| status == 200).await;
    go_miner_starts(&server);
    let (_, body) = ready_until(&cluster, 2, &ready, |status, _| status == 503).await;
    assert!(body.contains("miner: redis_go_miner_beside_leader: "), "{body}");
    assert!(!body.contains("advisory"), "{body}");
}

//! End to end over real sockets (issue 7): the local network for two sessions, POSTed JSON-RPC relays and a
//! share of gRPC relays (`SendRelay` over HTTP/2 to the relayer, `demo.Echo` on the backend) — every served relay
//! of either transport is in an accepted claim, every session with relays is claimed, every claim the simulator
//! selects for proof is proven, zero rejections, zero lost.

use relay_miner::cli::{LocalnetArgs, run_localnet_with_summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localnet_claims_and_proves_everything() {
    let args = LocalnetArgs {
        sessions: 2,
        rate: 20,
        apps: 2,
        gateways: 1,
        suppliers: 2,
        block_time_ms: 250,
        proof_probability: 0.5,
        grpc_share: 0.25,
        data_dir: None,
        keep_running: false,
    };
    let summary = run_localnet_with_summary(args).await.expect("localnet runs");
    assert!(
        summary.grpc_served > 0 && summary.grpc_served < summary.served,
        "both transports served: {summary:?}"
    );
    assert_eq!(summary.unclaimed, 0, "every served relay claimed: {summary:?}");
    assert_eq!(
        summary.claimed, summary.served,
        "claimed exactly what was served (every request answered): {summary:?}"
    );
    assert_eq!(summary.unsettled, 0, "every claim settled: {summary:?}");
    assert!(
        summary.ok,
        "localnet reported rejections or losses (see its summary above): {summary:?}"
    );
}

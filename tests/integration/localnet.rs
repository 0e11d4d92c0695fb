//! End to end over real sockets (issue 7): the local network for two sessions — every session with relays is
//! claimed, every claim the simulator selects for proof is proven, zero rejections, zero lost.

use relay_miner::cli::{LocalnetArgs, run_localnet};

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
        data_dir: None,
        keep_running: false,
    };
    let code = run_localnet(args).await.expect("localnet runs");
    assert_eq!(
        code, 0,
        "localnet reported rejections or losses (see its summary above)"
    );
}

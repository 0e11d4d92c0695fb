//! Redis mode: the readiness of this process's miner, as its own `miner` component of `/ready`.
//!
//! Why apart from the `storage` component: some Redis reasons concern the miner alone (a Go miner beside our
//! leader or refusing our campaigns, another process under our instance name; storage module `redis::health`,
//! "Who is not ready"). Reported as `storage`, they took the relayer of a `relay-miner run` process out of its
//! load balancer's rotation: every relay it would have served and claimed was lost while the alarm lasted,
//! though it could serve them. So here they are the `miner` component, advisory in a process that also serves
//! relays (listed in `/ready`'s 200 body as `advisory miner: ...`, answered by `/ready?component=miner`, logged
//! at WARN and in `ha_component_ready{component="miner"}`: what operators alert on, besides each alarm's own
//! ERROR log and metrics), and failing `/ready` in a miner-only process (`relay-miner miner`), whose only job is
//! mining (module `crate::telemetry`, "Advisory components").
//!
//! The state read is what the miner's campaigns and lease renewals left in the backend (no I/O), every
//! [`CHECK_EVERY`]; the loop beats `ha_loop_heartbeat_timestamp_seconds{loop="miner_readiness"}`.

use std::time::Duration;

use storage::redis::RedisBackend;
use tokio::task::JoinHandle;

use super::Role;
use crate::telemetry::Telemetry;

/// How often the miner's readiness is read. Its sources change at the miner's campaigns and renewals (every
/// tick, every `lease / 4`), so a second is well within what an alert sees.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The readiness component this module sets.
pub(super) const COMPONENT: &str = "miner";

/// Sets the `miner` readiness component from `backend`'s [`RedisBackend::miner_readiness`] every [`CHECK_EVERY`]
/// (first at once). `role` must mine; when it also relays, the component is advisory (module docs).
pub(super) fn spawn(backend: RedisBackend, role: Role, telemetry: Telemetry) -> JoinHandle<()> {
    if role.relays() {
        telemetry.set_advisory(COMPONENT);
    }
    tokio::spawn(async move {
        let heartbeat = telemetry.heartbeat("miner_readiness");
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            heartbeat.beat();
            match backend.miner_readiness() {
                Ok(()) => telemetry.set_ready(COMPONENT),
                Err(e) => telemetry.set_not_ready(COMPONENT, e.reason(), &e.to_string()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use storage::redis::RedisConfig;
    use storage::redis::server::{RedisServer, ServerOptions};

    use super::*;

    /// The loop beats its heartbeat and sets the `miner` component; advisory in a `run` process, failing
    /// `/ready` in a miner-only one (readiness itself is asserted on real processes in the integration test
    /// `redis_ready_roles`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn beats_and_sets_the_miner_component() {
        let server = RedisServer::start(ServerOptions::default()).unwrap();
        let backend = RedisBackend::connect(RedisConfig::new(server.url())).await.unwrap();
        let telemetry = Telemetry::new().unwrap();
        let task = spawn(backend.clone(), Role::All, telemetry.clone());
        telemetry.assert_heartbeat_advances("miner_readiness").await;
        assert!(
            telemetry
                .render_metrics()
                .contains("ha_component_ready{component=\"miner\"} 1")
        );
        task.abort();

        // Stopped before the component is set by hand, so no tick of the loop races it.
        let miner_only = Telemetry::new().unwrap();
        let task = spawn(backend.clone(), Role::Miner, miner_only.clone());
        task.abort();
        let _ = task.await;
        miner_only.set_not_ready(COMPONENT, "test", "not advisory");
        assert!(miner_only.readiness().is_err());
        let run = Telemetry::new().unwrap();
        let task = spawn(backend, Role::All, run.clone());
        task.abort();
        let _ = task.await;
        run.set_not_ready(COMPONENT, "test", "advisory");
        assert_eq!(run.readiness(), Ok(()));
    }
}

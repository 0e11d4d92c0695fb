//! The traffic of a raft process test (`raft_chaos`, `raft_partition`, `raft_full_disk`, `raft_miner_handoff`,
//! `raft_miner_hung`, `raft_recover_single`): one load sender per node and the submitter monitor, started once the
//! cluster's miner leads. [`Traffic::finish`] stops the load first and the monitor only after the last session the
//! load reached has settled: the claims and proofs of that session come after the load stopped, and the "one
//! submitter per term" check must see them (each has its own stop signal).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_miner::loadgen::LoadGen;
use relay_miner::protocol::session::SessionWindows;
use relay_miner::protocol::wire::SharedParams;

use super::cluster::{Cluster, Env, SERVICE};
use super::load::{Load, spawn_load};
use super::monitor::{Submitters, spawn_monitor};
use super::{poll, wait_height};

/// The running load and monitor.
pub struct Traffic {
    /// What the load saw so far.
    pub load: Arc<Mutex<Load>>,
    /// Who submitted, per term.
    pub submitters: Arc<Mutex<Submitters>>,
    stop_load: tokio::sync::watch::Sender<bool>,
    stop_monitor: tokio::sync::watch::Sender<bool>,
    load_task: tokio::task::JoinHandle<()>,
    monitor_task: tokio::task::JoinHandle<()>,
}

impl Traffic {
    /// Starts one sender per node of `nodes` (to its relay URL, `pace` between requests) and the monitor of
    /// every live node.
    pub fn start(env: &Env, cluster: &Cluster, nodes: impl IntoIterator<Item = u64>, pace: Duration) -> Self {
        let gens: Vec<(u64, LoadGen)> = nodes
            .into_iter()
            .map(|id| {
                let relay_url = &cluster.proc(id).relay_url;
                let loadgen = LoadGen::new(&env.genesis, Arc::clone(&env.client), relay_url, SERVICE).unwrap();
                (id, loadgen)
            })
            .collect();
        let load = Arc::new(Mutex::new(Load::default()));
        let submitters = Arc::new(Mutex::new(Submitters::default()));
        let (stop_load, load_rx) = tokio::sync::watch::channel(false);
        let (stop_monitor, monitor_rx) = tokio::sync::watch::channel(false);
        let load_task = spawn_load(env.chain.clone(), gens, Arc::clone(&load), load_rx, pace);
        let monitor_task = spawn_monitor(
            env.chain.clone(),
            Arc::clone(&cluster.live),
            Arc::clone(&submitters),
            monitor_rx,
        );
        Self {
            load,
            submitters,
            stop_load,
            stop_monitor,
            load_task,
            monitor_task,
        }
    }

    /// Stops sending to `node` and waits (up to `limit`) until its last request is answered. A node answers a
    /// relay once its append is finished (committed, or failed and refused), so nothing sent to it is left
    /// waiting in it: a node cut off from the leader retries a relay's append until it is healed or the write's
    /// deadline passes, and healed, it forwards the relay to the leader (`raft_partition` module docs).
    pub async fn pause(&self, node: u64, limit: Duration) {
        self.load.lock().unwrap().paused.insert(node);
        poll("the paused sender's last request answered", limit, || async {
            (!self.load.lock().unwrap().in_flight.contains(&node)).then_some(())
        })
        .await;
    }

    /// Sends to `node` again after [`Traffic::pause`].
    pub fn resume(&self, node: u64) {
        self.load.lock().unwrap().paused.remove(&node);
    }

    /// Stops the load, waits (up to 60 s) until the last session it served has settled under `params` (its
    /// claims and proofs all made, the monitor sampling on), then stops the monitor: the load's and the monitor's
    /// totals.
    pub async fn finish(self, env: &Env, params: &SharedParams) -> (Load, Submitters) {
        self.stop_load.send(true).unwrap();
        self.load_task.await.unwrap();
        let load = std::mem::take(&mut *self.load.lock().unwrap());
        let settle = SessionWindows::new(params, load.max_session_end).unwrap();
        wait_height(&env.chain, settle.settlement + 1, Duration::from_secs(60)).await;
        self.stop_monitor.send(true).unwrap();
        self.monitor_task.await.unwrap();
        let submitters = std::mem::take(&mut *self.submitters.lock().unwrap());
        (load, submitters)
    }
}

/// Served relays answered by the nodes in `nodes`.
pub fn served_by(load: &Mutex<Load>, nodes: &[u64]) -> u64 {
    let l = load.lock().unwrap();
    nodes.iter().map(|n| l.served_by.get(n).copied().unwrap_or(0)).sum()
}

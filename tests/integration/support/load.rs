//! Load against a set of nodes: one sequential sender per node, so a node that hangs (cut off, no quorum) only
//! slows its own sender; outcomes are counted per (supplier, session) and per node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use relay_miner::loadgen::{LoadGen, Outcome};
use relay_miner::sim::chain::SimChain;

/// A request without an answer within this is counted as failed (it may still have been mined).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Outcomes of the load.
#[derive(Debug, Default)]
pub struct Load {
    /// Served relays per (supplier, session).
    pub served: BTreeMap<(String, String), u64>,
    /// Served relays per node.
    pub served_by: BTreeMap<u64, u64>,
    /// Failed or refused requests per node.
    pub failed_by: BTreeMap<u64, u64>,
    pub max_session_end: i64,
    pub sent: u64,
    pub failed: u64,
    pub refused: u64,
    pub last_error: Option<String>,
    /// Nodes whose sender sends nothing new ([`super::traffic::Traffic::pause`]).
    pub paused: BTreeSet<u64>,
    /// Nodes whose sender has a request out.
    pub in_flight: BTreeSet<u64>,
}

impl Load {
    pub fn total_served(&self) -> u64 {
        self.served.values().sum()
    }

    /// Requests whose relay may have been mined without the sender seeing it served.
    pub fn unanswered(&self) -> u64 {
        self.failed + self.refused
    }

    /// The line a process test prints about its load: sent, served (per node), refused, failed (with the last
    /// error), sessions.
    pub fn summary(&self) -> String {
        format!(
            "load: {} sent, {} served (per node {:?}), {} refused, {} failed (last error: {:?}); {} sessions",
            self.sent,
            self.total_served(),
            self.served_by,
            self.refused,
            self.failed,
            self.last_error,
            self.served.len()
        )
    }
}

/// Sends relays to every node in `gens` (one sender each, `pace` between requests) until `stop`. The senders
/// run on a thread of their own: ring signing in a debug build takes milliseconds of CPU per relay and must not
/// starve the test's runtime (the simulator's block production, the monitors, the deadlines).
pub fn spawn_load(
    chain: SimChain,
    gens: Vec<(u64, LoadGen)>,
    load: Arc<Mutex<Load>>,
    stop: tokio::sync::watch::Receiver<bool>,
    pace: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(senders(chain, gens, load, stop, pace));
    })
}

async fn senders(
    chain: SimChain,
    gens: Vec<(u64, LoadGen)>,
    load: Arc<Mutex<Load>>,
    stop: tokio::sync::watch::Receiver<bool>,
    pace: Duration,
) {
    let senders = gens.len() as u64;
    let tasks: Vec<_> = gens
        .into_iter()
        .enumerate()
        .map(|(i, (node, loadgen))| {
            let (chain, load, mut stop) = (chain.clone(), Arc::clone(&load), stop.clone());
            tokio::spawn(async move {
                let mut n = i as u64;
                // Stopped, or the test is gone (its sender dropped, e.g. by a panic).
                while !*stop.borrow() && stop.has_changed().is_ok() {
                    let paused = {
                        let mut l = load.lock().unwrap();
                        let paused = l.paused.contains(&node);
                        if !paused {
                            l.in_flight.insert(node);
                        }
                        paused
                    };
                    if paused {
                        tokio::select! {
                            _ = tokio::time::sleep(pace) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    n += senders;
                    let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, loadgen.send(n, chain.height())).await {
                        Ok(o) => o,
                        Err(_) => Outcome::Failed(format!("no answer within {REQUEST_TIMEOUT:?}")),
                    };
                    {
                        let mut l = load.lock().unwrap();
                        l.in_flight.remove(&node);
                        l.sent += 1;
                        match outcome {
                            Outcome::Served {
                                supplier,
                                session_id,
                                session_end,
                            } => {
                                *l.served.entry((supplier, session_id)).or_default() += 1;
                                *l.served_by.entry(node).or_default() += 1;
                                l.max_session_end = l.max_session_end.max(session_end);
                            }
                            Outcome::Refused(e) => {
                                l.refused += 1;
                                *l.failed_by.entry(node).or_default() += 1;
                                l.last_error = Some(e);
                            }
                            Outcome::Failed(e) => {
                                l.failed += 1;
                                *l.failed_by.entry(node).or_default() += 1;
                                l.last_error = Some(e);
                            }
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pace) => {}
                        _ = stop.changed() => {}
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

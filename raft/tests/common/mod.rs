//! Test support: in-process clusters of real raft nodes on 127.0.0.1 free ports with temp data dirs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use raft::{RaftConfig, RaftNode, Status};

pub const TOKEN: &str = "test-cluster-token";
/// The supplier whose relays the tests append.
pub const SUPPLIER: &str = "pokt1a";
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 5 ms until it returns `Some`, panicking after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `node`'s relay log holds `n` undelivered entries of [`SUPPLIER`].
pub async fn holds(node: &RaftNode, n: u64) {
    let log = node.storage().relay_log;
    wait_for(&format!("node {} holds {n} relays", node.id()), || {
        let log = log.clone();
        async move { (log.backlog(SUPPLIER).await.unwrap().undelivered == n).then_some(()) }
    })
    .await;
}

/// How long a restarting node's start check waits for a member that is down (`raft::rollback`).
pub const START_CHECK_WAIT: Duration = Duration::from_secs(3);

pub fn config(id: u64, listen: SocketAddr, dir: PathBuf) -> RaftConfig {
    let mut cfg = RaftConfig::new(id, listen, dir, TOKEN);
    cfg.start_check_wait = START_CHECK_WAIT;
    cfg
}

/// A cluster under test: nodes by id (a stopped node is `None`), their dirs and addresses.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: BTreeMap<u64, Option<RaftNode>>,
    pub addrs: BTreeMap<u64, SocketAddr>,
}

impl Cluster {
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    /// Starts `n` nodes (ids 1..=n), initializes the cluster on node 1 and waits for a leader.
    pub async fn start(n: u64) -> Self {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut RaftConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            dir,
            nodes: BTreeMap::new(),
            addrs: BTreeMap::new(),
        };
        let mut current = true;
        for id in 1..=n {
            let mut cfg = config(id, "127.0.0.1:0".parse().unwrap(), c.data_dir(id));
            tweak(&mut cfg);
            current &= cfg.features == raft::FeatureSet::CURRENT;
            let node = RaftNode::start(cfg).await.unwrap();
            c.addrs.insert(id, node.local_addr());
            c.nodes.insert(id, Some(node));
        }
        let members = c
            .nodes
            .iter()
            .map(|(id, n)| (*id, n.as_ref().unwrap().node_info()))
            .collect();
        c.node(1).initialize(members).await.unwrap();
        if current {
            c.write_sets_on().await;
        } else {
            c.leader().await;
        }
        c
    }

    /// Waits until the leader proposes write sets as one entry (every member advertised the feature to it in
    /// its term) and every follower knows the leader does (a follower forwards a write set only then): right
    /// after an election a write set is refused (`Conflict`) until the leader heard from every member.
    pub async fn write_sets_on(&self) -> u64 {
        wait_for("write sets on, on every node", || async {
            let l = self.leader().await;
            let on = self.node(l).status().write_sets == Some(true)
                && self.running().all(|n| {
                    n.status()
                        .features
                        .iter()
                        .any(|f| f.node_id == l && f.advertised.as_ref().is_some_and(|a| !a.is_empty()))
                });
            on.then_some(l)
        })
        .await
    }

    pub fn node(&self, id: u64) -> &RaftNode {
        self.nodes[&id].as_ref().unwrap()
    }

    pub fn running(&self) -> impl Iterator<Item = &RaftNode> {
        self.nodes.values().flatten()
    }

    /// Waits until every running node agrees on one leader that has quorum; returns its id.
    pub async fn leader(&self) -> u64 {
        wait_for("a leader every running node agrees on", || async {
            let statuses: Vec<Status> = self.running().map(|n| n.status()).collect();
            let leader = statuses.first()?.leader_id?;
            let agreed = statuses.iter().all(|s| s.leader_id == Some(leader));
            let leading = self.nodes.get(&leader)?.as_ref()?.is_leader();
            (agreed && leading).then_some(leader)
        })
        .await
    }

    /// Some follower that is running.
    pub async fn follower(&self) -> u64 {
        let l = self.leader().await;
        self.running().map(|n| n.id()).find(|id| *id != l).unwrap()
    }

    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.get_mut(&id).unwrap().take().unwrap();
        node.shutdown().await;
    }

    /// Restarts a stopped node on its data dir and address (retrying while its files are still being closed).
    pub async fn restart(&mut self, id: u64) {
        let addr = self.addrs[&id];
        let dir = self.data_dir(id);
        let node = wait_for("the node restarts on its data dir", || {
            let dir = dir.clone();
            async move { RaftNode::start(config(id, addr, dir)).await.ok() }
        })
        .await;
        self.nodes.insert(id, Some(node));
    }

    /// Waits until every running node applied at least the leader's last log index.
    pub async fn converged(&self) {
        let l = self.leader().await;
        let target = self.node(l).status().last_log_index;
        wait_for("every node applies the leader's log", || async {
            self.running().all(|n| n.status().applied_index >= target).then_some(())
        })
        .await;
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            if let Some(n) = self.nodes.get_mut(&id).and_then(|n| n.take()) {
                n.shutdown().await;
            }
        }
    }
}

/// A TCP proxy in front of one node's raft port whose answers can be muted: requests still reach the node, its
/// answers are read and discarded, so the caller times out (a link that loses packets in one direction). Its
/// answers can also be delayed (a node that answers late, as on a loaded host).
pub struct MuteProxy {
    addr: SocketAddr,
    mute: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl MuteProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mute = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let muted = std::sync::Arc::clone(&mute);
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let delays = std::sync::Arc::clone(&delay_ms);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                });
                let muted = std::sync::Arc::clone(&muted);
                let delays = std::sync::Arc::clone(&delays);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_rx.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let delay = delays.load(Ordering::SeqCst);
                        if delay > 0 {
                            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                        }
                        if !muted.load(Ordering::SeqCst) && client_tx.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            mute,
            delay_ms,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Mutes (or unmutes) the node's answers on every connection, open or new.
    pub fn mute(&self, on: bool) {
        self.mute.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Delays each of the node's answers by `delay` (zero: none), on every connection.
    pub fn delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for MuteProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

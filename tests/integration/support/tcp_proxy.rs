//! A fault-injecting TCP proxy between raft nodes: one listener in front of each node's raft port, which every
//! peer dials instead of the port itself (the addresses in the raft membership are the proxies'). Each accepted
//! connection is attributed to the node process that opened it (the `/proc` owner of its source socket), so
//! faults act per directed link `from → to`:
//! - `cut` drops the link's open connections at once and blackholes new ones: they are accepted, their bytes
//!   read and discarded, never answered (peers see RPC timeouts, as across a real partition); the other links'
//!   connections stay up;
//! - `heal` closes the blackholed connections, so peers reconnect and are forwarded again.
//!
//! Looking the owner up costs a netlink sock_diag request and a scan of the nodes' `/proc/<pid>/fd`
//! ([`super::sock_diag`]), so it is done only for connections into a node with some cut links; a connection whose
//! owner cannot be found (its client is usually closing it already) is blackholed, so a cut never leaks.
//!
//! Linux only (sock_diag, `/proc/<pid>/fd`); the test's own admin calls go to the raft ports directly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use super::cluster::Live;

/// Counters of what the proxies did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProxyStats {
    /// Connections forwarded to their target.
    pub forwarded: u64,
    /// Connections accepted on a cut link and blackholed.
    pub blackholed: u64,
    /// Open connections dropped by a cut.
    pub dropped: u64,
    /// Connections into a node with a cut link whose source process was not found (blackholed).
    pub unidentified: u64,
    /// Connections closed by their client before the proxy identified it.
    pub gone: u64,
    /// Connections whose owner was looked up on accept (some but not all links into their target cut).
    pub identified: u64,
    /// Longest time from accept to the decision for such a connection (scheduling included), in µs.
    pub identify_max_us: u64,
}

#[derive(Default)]
struct State {
    /// Cut directed links `(from, to)`.
    cut: BTreeSet<(u64, u64)>,
    /// Open connections per directed link (`from` = 0 when not identified).
    conns: BTreeMap<(u64, u64), Vec<Conn>>,
    stats: ProxyStats,
}

/// One accepted connection.
struct Conn {
    task: AbortHandle,
    /// The client's port (to identify it later).
    peer_port: u16,
    /// The proxy's listening port it came in on.
    proxy_port: u16,
    blackholed: bool,
}

/// The proxies in front of every node's raft port.
pub struct LinkProxies {
    state: Arc<Mutex<State>>,
    addrs: BTreeMap<u64, String>,
    live: Live,
    /// The proxies run on a runtime of their own, so the test's runtime (simulator, load, monitors) and the
    /// proxies' forwarding do not delay each other.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for LinkProxies {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl LinkProxies {
    /// One proxy per `targets` entry (node id → its raft port's address); `live` says which process is which
    /// node.
    pub fn start(targets: &BTreeMap<u64, String>, live: Live) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("link-proxy")
            .enable_all()
            .build()
            .unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let mut addrs = BTreeMap::new();
        for (&to, target) in targets {
            let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std_listener.set_nonblocking(true).unwrap();
            let port = std_listener.local_addr().unwrap().port();
            addrs.insert(to, format!("127.0.0.1:{port}"));
            let (state, live, target) = (Arc::clone(&state), Arc::clone(&live), target.clone());
            let nodes: Vec<u64> = targets.keys().copied().collect();
            runtime.spawn(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                while let Ok((socket, peer)) = listener.accept().await {
                    // Identifying the source costs a netlink request and /proc reads: only when it
                    // matters, i.e. some but not all links into `to` are cut, and then on a blocking thread.
                    if let Some(socket) = accept_unidentified(&state, &nodes, (to, port), socket, &target) {
                        let (state, live, target) = (Arc::clone(&state), Arc::clone(&live), target.clone());
                        let accepted = std::time::Instant::now();
                        tokio::spawn(async move {
                            let from = tokio::task::spawn_blocking(move || source_node(peer.port(), port, &live))
                                .await
                                .unwrap_or(Source::Unknown);
                            {
                                let mut s = state.lock().unwrap();
                                s.stats.identified += 1;
                                let took = u64::try_from(accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
                                s.stats.identify_max_us = s.stats.identify_max_us.max(took);
                            }
                            accept(&state, from, (to, port), socket, &target);
                        });
                    }
                }
            });
        }
        Self {
            state,
            addrs,
            live,
            runtime: Some(runtime),
        }
    }

    /// The address peers dial to reach node `id`.
    pub fn addr(&self, id: u64) -> String {
        self.addrs[&id].clone()
    }

    /// Cuts `a ↔ b` in both directions: the link's open connections are dropped (those not identified yet are
    /// looked up now; a connection whose owner cannot be found is dropped too), new ones are blackholed.
    pub fn cut(&self, a: u64, b: u64) {
        let mut s = self.state.lock().unwrap();
        s.cut.insert((a, b));
        s.cut.insert((b, a));
        for to in [a, b] {
            let unidentified = s.conns.remove(&(0, to)).unwrap_or_default();
            for c in unidentified.into_iter().filter(|c| !c.task.is_finished()) {
                match source_node(c.peer_port, c.proxy_port, &self.live) {
                    Source::Node(id) if !s.cut.contains(&(id, to)) => s.conns.entry((id, to)).or_default().push(c),
                    _ => {
                        c.task.abort();
                        s.stats.dropped += 1;
                    }
                }
            }
        }
        for link in [(a, b), (b, a)] {
            for c in s.conns.remove(&link).unwrap_or_default() {
                if !c.task.is_finished() {
                    c.task.abort();
                    s.stats.dropped += 1;
                }
            }
        }
    }

    /// Heals `a ↔ b`: its blackholed connections (and the blackholed ones of unknown owner into `a` or `b`) are
    /// closed, so peers reconnect; new ones are forwarded.
    pub fn heal(&self, a: u64, b: u64) {
        let mut s = self.state.lock().unwrap();
        s.cut.remove(&(a, b));
        s.cut.remove(&(b, a));
        for link in [(a, b), (b, a), (0, a), (0, b)] {
            if let Some(conns) = s.conns.get_mut(&link) {
                conns.retain(|c| {
                    if c.blackholed {
                        c.task.abort();
                    }
                    !c.blackholed && !c.task.is_finished()
                });
            }
        }
    }

    /// Cuts `node` off from every other proxied node.
    pub fn isolate(&self, node: u64) {
        for &other in self.addrs.keys().filter(|o| **o != node) {
            self.cut(node, other);
        }
    }

    /// Heals every link of `node`.
    pub fn rejoin(&self, node: u64) {
        for &other in self.addrs.keys().filter(|o| **o != node) {
            self.heal(node, other);
        }
    }

    pub fn stats(&self) -> ProxyStats {
        self.state.lock().unwrap().stats
    }
}

/// Handles a new connection into node `to` without looking its owner up when the links into `to` allow it: none
/// cut (forwarded) or all cut (blackholed). Decided and registered under one hold of the lock, so a cut or heal
/// racing the accept either sees the connection or is seen by it. Returns the socket when only some links into
/// `to` are cut (its owner must be identified).
fn accept_unidentified(
    state: &Arc<Mutex<State>>,
    nodes: &[u64],
    (to, proxy_port): (u64, u16),
    socket: TcpStream,
    target: &str,
) -> Option<TcpStream> {
    let mut s = state.lock().unwrap();
    let cut: Vec<bool> = nodes
        .iter()
        .filter(|n| **n != to)
        .map(|n| s.cut.contains(&(*n, to)))
        .collect();
    if cut.iter().all(|c| !c) {
        register(&mut s, (0, to), false, proxy_port, socket, target);
        None
    } else if cut.iter().all(|c| *c) {
        register(&mut s, (0, to), true, proxy_port, socket, target);
        None
    } else {
        Some(socket)
    }
}

/// Handles one accepted connection from `from` to node `to` (through the proxy listening on `proxy_port`).
fn accept(state: &Arc<Mutex<State>>, from: Source, (to, proxy_port): (u64, u16), socket: TcpStream, target: &str) {
    // The lock is held across the decision and the registration, so a concurrent cut sees the connection.
    let mut s = state.lock().unwrap();
    let (link, cut) = match from {
        Source::Node(id) => ((id, to), s.cut.contains(&(id, to))),
        // Some link into `to` is cut and this connection's owner is unknown (it is usually closing already):
        // blackholed, so a cut can never leak; a healthy peer just reconnects.
        Source::Unknown => {
            s.stats.unidentified += 1;
            ((0, to), true)
        }
        Source::Gone => {
            s.stats.gone += 1;
            return;
        }
    };
    register(&mut s, link, cut, proxy_port, socket, target);
}

/// Forwards (`cut` false) or blackholes `socket` and files it under `link`, so cuts and heals find it.
fn register(s: &mut State, link: (u64, u64), cut: bool, proxy_port: u16, socket: TcpStream, target: &str) {
    let Ok(peer) = socket.peer_addr() else { return };
    let task = if cut {
        s.stats.blackholed += 1;
        tokio::spawn(blackhole(socket)).abort_handle()
    } else {
        s.stats.forwarded += 1;
        tokio::spawn(forward(socket, target.to_owned())).abort_handle()
    };
    let conns = s.conns.entry(link).or_default();
    conns.retain(|c| !c.task.is_finished());
    conns.push(Conn {
        task,
        peer_port: peer.port(),
        proxy_port,
        blackholed: cut,
    });
}

/// Reads and discards until the peer closes (or the task is aborted by a heal).
async fn blackhole(mut socket: TcpStream) {
    let mut buf = vec![0u8; 64 << 10];
    while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn forward(mut socket: TcpStream, target: String) {
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = socket.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut socket, &mut upstream).await;
}

/// The node whose process owns the client socket `127.0.0.1:{source_port} → 127.0.0.1:{proxy_port}`.
fn source_node(source_port: u16, proxy_port: u16, live: &Live) -> Source {
    let Some(inode) = super::sock_diag::socket_inode(source_port, proxy_port) else {
        return Source::Gone;
    };
    let pids: Vec<(u32, u64)> = live.lock().unwrap().iter().map(|(id, n)| (n.pid, *id)).collect();
    let link = format!("socket:[{inode}]");
    let node = pids.into_iter().find_map(|(pid, id)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == link.as_str()))
            .then_some(id)
    });
    node.map_or(Source::Unknown, Source::Node)
}

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// A running node.
    Node(u64),
    /// Looked up, but no running node owns it (blackholed, counted).
    Unknown,
    /// The client socket is already closed (it gave up before the proxy looked): nothing to forward.
    Gone,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// Echo servers behind the proxies; the proxies attribute this test process' connections to node 1.
    #[tokio::test]
    async fn cut_drops_and_blackholes_heal_forwards_again() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let live: Live = Default::default();
        live.lock().unwrap().insert(
            1,
            super::super::cluster::LiveNode {
                raft_addr: String::new(),
                metrics_url: String::new(),
                incarnation: 1,
                pid: std::process::id(),
            },
        );
        // Three proxied nodes (all echo): this process dials node 2's proxy as node 1.
        let targets = BTreeMap::from([(1, echo_addr.clone()), (2, echo_addr.clone()), (3, echo_addr)]);
        let proxies = LinkProxies::start(&targets, live);
        let echo_once = |addr: String| async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tokio::time::timeout(std::time::Duration::from_millis(300), s.read_exact(&mut buf))
                .await
                .ok()
                .and_then(|r| r.ok())
                .map(|_| buf)
        };
        assert_eq!(echo_once(proxies.addr(2)).await, Some(*b"ping"));
        let mut open = TcpStream::connect(proxies.addr(2)).await.unwrap();
        open.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        open.read_exact(&mut one).await.unwrap();
        proxies.cut(1, 2);
        // The open connection is dropped, a new one is accepted but never answered.
        let mut buf = [0u8; 1];
        assert!(matches!(open.read(&mut buf).await, Ok(0) | Err(_)));
        assert_eq!(echo_once(proxies.addr(2)).await, None);
        proxies.heal(1, 2);
        assert_eq!(echo_once(proxies.addr(2)).await, Some(*b"ping"));
        let stats = proxies.stats();
        assert_eq!((stats.blackholed, stats.unidentified), (1, 0), "{stats:?}");
        assert!(stats.dropped >= 1, "{stats:?}");
        assert_eq!(stats.forwarded, 3, "{stats:?}");
    }
}

//! Ports for the child processes the tests start (nodes, raft peers, TLS fronts): free when handed out, and
//! kept from everything else that binds on this host until the test process ends.
//!
//! A port found by binding port 0 and releasing it is only free at that instant. Until the child binds it,
//! anything else binding port 0 can be given it by the kernel: an in-process server of another test (`serve`, a
//! simulator, a demo backend), or the test binary of a second `cargo test` on the same host. A CI run lost a
//! node that way: its `/ready` answered 404 for 60 s from whatever had taken its metrics port. So ports come
//! from below the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), which port-0 binds and
//! outgoing connections never use, and each is reserved across processes by an exclusive lock on a file named
//! after it (released by the kernel when the process exits, so a killed test leaves nothing stale).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowest port handed out; the range ends where the ephemeral range begins.
const LOWEST: u16 = 10_000;

/// Ports this process holds, each with its lock file open (the lock lasts as long as the file stays open).
static HELD: Mutex<BTreeMap<u16, File>> = Mutex::new(BTreeMap::new());

/// A free TCP port on 127.0.0.1 that no other caller of this function, in this process or another, gets
/// while this process runs, outside the kernel's ephemeral range (module docs). A killed node's ports stay
/// this process's, so a node started meanwhile never gets one (a CI run once gave a new node a killed node's
/// raft port as its relay port).
pub fn free_port() -> u16 {
    let end = ephemeral_start();
    if end <= LOWEST + 1_000 {
        // No room below the ephemeral range on this host: the old way (free when asked, not reserved).
        return ephemeral_port();
    }
    let span = u64::from(end - LOWEST);
    let dir = lock_dir();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let start = (u128::from(std::process::id()) * 7_919 + nanos) % u128::from(span);
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = LOWEST + u16::try_from((start as u64 + i) % span).unwrap();
        if held.contains_key(&port) {
            continue;
        }
        let Ok(file) = File::options()
            .create(true)
            .write(true)
            .truncate(false)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        held.insert(port, file);
        return port;
    }
    panic!("no free port in {LOWEST}..{end}");
}

/// First port of the kernel's ephemeral range (32768 when it cannot be read: Linux's default).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|p| p.parse().ok()))
        .unwrap_or(32_768)
}

/// The directory of the per-port lock files, shared by every test process of this user on the host.
fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("relay-miner-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port the kernel picks from its ephemeral range, never one this process handed out before.
fn ephemeral_port() -> u16 {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if let std::collections::btree_map::Entry::Vacant(slot) = held.entry(port) {
            // No lock file: this path only keeps the process from handing a port out twice.
            slot.insert(File::open("/dev/null").unwrap());
            return port;
        }
    }
}

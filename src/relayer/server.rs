//! The relay listener's HTTP server: the limits a port open to the internet needs.
//!
//! `axum::serve` sets no timer, so hyper's header read timeout never fires, and it accepts connections without
//! bound. A client that opens connections and sends nothing, or its headers a byte at a time (slowloris), would
//! then hold a task and a file descriptor each until the process runs out of them, and gateways could no longer
//! connect. This server is hyper (HTTP/1 and HTTP/2, with upgrades) with:
//! - a header read timeout per request (`relay_server.header_read_timeout_seconds`): a request head that does
//!   not arrive complete in time closes its connection;
//! - an idle timeout (`relay_server.idle_timeout_seconds`): a connection with no request in flight for that long
//!   is closed, at the latest twice that long after its last request (hyper's header timer starts only at a
//!   request's first byte, so a silent connection needs this);
//! - at most `relay_server.max_connections` connections served at once; beyond it the server stops accepting
//!   and new connections wait in the kernel's accept queue until one closes (counted, logged once a second);
//! - optionally at most `relay_server.max_connections_per_ip` of them from one client address (IPv6 counted
//!   per /64, the block one host usually holds): a connection beyond it is closed at once, before anything is
//!   read (counted, logged once a second), so one client cannot take every slot and lock the gateways out. A
//!   WebSocket relay connection upgraded from it stays counted until it ends ([`ClientSlot`]). Off by default: behind a load balancer or ingress every connection comes from its few addresses;
//! - an accept error such as running out of file descriptors pauses accepting briefly instead of spinning;
//! - graceful shutdown: on the signal it stops accepting, lets every connection finish the requests in flight,
//!   then returns (the SIGTERM drain: every relay the server took gets its answer).
//!
//! The body read timeout is the relayer's (`Relayer::read_body`), so a slow body gets a `RelayMinerError`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

use crate::telemetry::LogThrottle;

/// Limits of the relay listener (`relay_server.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client has to send a request's head once it started it.
    pub header_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one client address (IPv6: one /64); `None` = no such limit.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for ServerLimits {
    /// 10 s for a request head, 120 s idle, 10,000 connections, no limit per client address.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10_000,
            max_connections_per_ip: None,
        }
    }
}

/// What the server reports to its owner (counted as metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// A connection waited in the accept queue because `max_connections` were open.
    Waited,
    /// A connection was closed unserved because its client address had `max_connections_per_ip` open.
    RefusedPerIp,
}

/// How long accepting pauses after an accept error (e.g. `EMFILE`: out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` with `limits` until `shutdown` resolves, then lets the open connections finish
/// their requests in flight and returns. `on_event` hears of every connection that waited or was refused.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
    on_event: impl Fn(ServerEvent) + Send + Sync + 'static,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new()).enable_connect_protocol();
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop) = watch::channel(false);
    let per_ip = Arc::new(PerIp::default());
    let full_log = LogThrottle::new(Duration::from_secs(1));
    let accept_log = LogThrottle::new(Duration::from_secs(1));
    let per_ip_log = LogThrottle::new(Duration::from_secs(1));
    tokio::pin!(shutdown);
    loop {
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                on_event(ServerEvent::Waited);
                if let Some(suppressed) = full_log.admit() {
                    tracing::warn!(
                        max_connections = max,
                        suppressed,
                        "relay server at relay_server.max_connections; new connections wait until one closes"
                    );
                }
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if let Some(suppressed) = accept_log.admit() {
                        tracing::warn!(error = %e, suppressed, "relay server cannot accept a connection; pausing");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let ip_slot = match limits.max_connections_per_ip {
            None => None,
            Some(max) => match per_ip.admit(client_key(peer.ip()), max) {
                Ok(ip_slot) => Some(ip_slot),
                Err(client) => {
                    on_event(ServerEvent::RefusedPerIp);
                    if let Some(suppressed) = per_ip_log.admit() {
                        tracing::warn!(
                            %client,
                            max_connections_per_ip = max,
                            suppressed,
                            "relay server: client at relay_server.max_connections_per_ip; connection closed"
                        );
                    }
                    drop(stream);
                    continue;
                }
            },
        };
        // Relays are small request/response pairs: no Nagle delay on the answer.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        // Shared with the connection's requests: an upgraded one (a WebSocket relay connection) outlives this
        // connection's task and keeps its client counted until it ends.
        let ip_slot = ip_slot.map(Arc::new);
        let service = {
            let (router, activity, client) = (router.clone(), Arc::clone(&activity), ip_slot.clone());
            hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                let in_flight = InFlight::start(&activity);
                let router = router.clone();
                if let Some(slot) = &client {
                    request.extensions_mut().insert(ClientSlot {
                        _slot: Arc::clone(slot),
                    });
                }
                async move {
                    let response = router.oneshot(request.map(axum::body::Body::new)).await;
                    drop(in_flight);
                    response
                }
            })
        };
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let stop = stop.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            drive(conn, activity, idle_timeout, stop).await;
            drop(ip_slot);
            drop(slot);
        });
    }
    drop(listener);
    // Drain: every connection finishes its requests in flight and closes; then every slot is free again.
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// The address a client is counted under for `max_connections_per_ip`: IPv4 as is (IPv4-mapped IPv6 too), IPv6
/// by its /64 (one host or LAN usually holds a whole /64, so counting single addresses would bound nothing).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Connections open per client address.
#[derive(Default)]
struct PerIp {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIp {
    /// A slot for one more connection from `client`, or `Err(client)` when it has `max` open.
    fn admit(self: &Arc<Self>, client: IpAddr, max: usize) -> Result<IpSlot, IpAddr> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(client).or_insert(0);
        if *n >= max {
            return Err(client);
        }
        *n += 1;
        Ok(IpSlot {
            table: Arc::clone(self),
            client,
        })
    }
}

/// A connection's slot under `max_connections_per_ip`, in its requests' extensions (when the limit is set): a
/// request that takes the connection over (a WebSocket upgrade) holds it until it ends, so upgraded connections
/// stay counted against their client's address.
#[derive(Clone)]
pub struct ClientSlot {
    _slot: Arc<IpSlot>,
}

/// One open connection of a client; its drop frees the slot (and the address's entry with its last one).
struct IpSlot {
    table: Arc<PerIp>,
    client: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Runs one connection to its end: closed gracefully (requests in flight finish) when it stayed idle for
/// `idle_timeout` or when the server stops. Idleness is checked on a timer, not on every request (no extra
/// wake-up on the relay path), so an idle connection closes between one and two `idle_timeout`s after its last
/// request.
async fn drive<C>(conn: C, activity: Arc<Activity>, idle_timeout: Duration, mut stop: watch::Receiver<bool>)
where
    C: hyper_util::server::graceful::GracefulConnection<Error = Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let mut closing = false;
    let mut check_at = Instant::now() + idle_timeout;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "relay connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(check_at), if !closing => {
                let now = Instant::now();
                match activity.idle_since() {
                    Some(since) if since + idle_timeout <= now => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    Some(since) => check_at = since + idle_timeout,
                    None => check_at = now + idle_timeout,
                }
            }
            changed = stop.changed(), if !closing => {
                if changed.is_err() || *stop.borrow() {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            last_end: Mutex::new(Instant::now()),
        }
    }

    /// Since when the connection has had no request in flight (`None` while one is).
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(*self.last_end.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// One request in flight; its drop (answered, or dropped with the connection) ends it.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_counted_per_ipv4_address_and_per_ipv6_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(
            key("::ffff:203.0.113.7"),
            "203.0.113.7",
            "IPv4-mapped IPv6 is the IPv4 client"
        );
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff::9"),
            "one /64, one client"
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }

    #[test]
    fn a_client_gets_at_most_max_slots_and_its_entry_goes_with_the_last() {
        let table = Arc::new(PerIp::default());
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let first = table.admit(a, 2).expect("first");
        let second = table.admit(a, 2).expect("second");
        assert_eq!(table.admit(a, 2).err(), Some(a), "a third one from the same client");
        let other = table.admit(b, 2).expect("another client is not affected");
        drop(first);
        let again = table.admit(a, 2).expect("a slot freed by a close is taken again");
        drop((second, again, other));
        assert!(
            table.open.lock().unwrap().is_empty(),
            "no entry stays for clients without connections"
        );
    }
}

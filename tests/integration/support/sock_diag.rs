//! Which socket is `127.0.0.1:{local} → 127.0.0.1:{remote}`: one `SOCK_DIAG_BY_FAMILY` netlink request (the
//! kernel's exact 4-tuple lookup, what `ss` uses), answered with the socket's inode.
//!
//! Reading `/proc/net/tcp` instead walks every TCP socket of the machine; with the few thousand TIME_WAIT
//! sockets a loaded test run leaves behind, one read took up to 11 s here, so the link proxies' source lookups
//! came too late for the raft RPC deadlines (50 ms heartbeats) and healthy links looked cut. The `/proc` walk
//! stays as the fallback when netlink is not available.

use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
/// `NLM_F_REQUEST`.
const NLM_F_REQUEST: u16 = 1;
/// `nlmsghdr` length.
const HEADER: usize = 16;
/// Offset of `idiag_inode` in `inet_diag_msg` (family, state, timer, retrans, 48-byte sockid, expires, rqueue,
/// wqueue, uid).
const INODE_AT: usize = 4 + 48 + 16;
/// `ENOENT`: the kernel knows no such socket.
const ENOENT: i32 = 2;

/// The inode of the IPv4 TCP socket `127.0.0.1:{local_port} → 127.0.0.1:{remote_port}`; `None` when it is gone
/// or closing (a closed socket lingers in TIME_WAIT or FIN_WAIT with inode 0).
pub fn socket_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    match netlink_inode(local_port, remote_port) {
        Ok(inode) => inode,
        Err(_) => proc_net_tcp_inode(local_port, remote_port),
    }
}

/// The netlink lookup; `Err` when netlink sock_diag itself is unavailable.
fn netlink_inode(local_port: u16, remote_port: u16) -> std::io::Result<Option<u64>> {
    let fd = rustix::net::socket(AddressFamily::NETLINK, SocketType::DGRAM, Some(netlink::SOCK_DIAG))?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(Duration::from_secs(1)))?;
    let request = request(local_port, remote_port);
    rustix::net::sendto(&fd, &request, SendFlags::empty(), &SocketAddrNetlink::new(0, 0))?;
    let mut buf = [0u8; 1024];
    let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty())?;
    let answer = &buf[..n.min(buf.len())];
    let u16_at = |at: usize| answer.get(at..at + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |at: usize| {
        answer
            .get(at..at + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    match u16_at(4) {
        Some(SOCK_DIAG_BY_FAMILY) => Ok(u32_at(HEADER + INODE_AT).map(u64::from).filter(|inode| *inode != 0)),
        Some(NLMSG_ERROR) => match u32_at(HEADER).map(|e| -(e as i32)) {
            Some(ENOENT) => Ok(None),
            e => Err(std::io::Error::other(format!("sock_diag error {e:?}"))),
        },
        other => Err(std::io::Error::other(format!("sock_diag answered type {other:?}"))),
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` asking for the one TCP/IPv4 socket with this 4-tuple.
fn request(local_port: u16, remote_port: u16) -> Vec<u8> {
    let loopback = [127u8, 0, 0, 1];
    let mut m = Vec::with_capacity(72);
    m.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid
    m.extend_from_slice(&[2, 6, 0, 0]); // AF_INET, IPPROTO_TCP, no extensions, pad
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&local_port.to_be_bytes()); // idiag_sport
    m.extend_from_slice(&remote_port.to_be_bytes()); // idiag_dport
    for addr in [loopback, loopback] {
        m.extend_from_slice(&addr); // idiag_src, then idiag_dst (IPv4 in the first word)
        m.extend_from_slice(&[0u8; 12]);
    }
    m.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if
    m.extend_from_slice(&[0xff; 8]); // idiag_cookie: INET_DIAG_NOCOOKIE
    m
}

/// The fallback: the socket's line in `/proc/net/tcp`.
fn proc_net_tcp_inode(local_port: u16, remote_port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let needle = format!(" 0100007F:{local_port:04X} 0100007F:{remote_port:04X} ");
    let at = text.find(&needle)?;
    let line = text[at..].lines().next()?;
    line.split_whitespace()
        .nth(8)
        .and_then(|inode| inode.parse().ok())
        .filter(|inode| *inode != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both lookups find this process' own client socket, with the inode its fd links to; a closed one is gone.
    /// Where netlink sock_diag is not allowed (a restricted sandbox) only the `/proc` fallback is checked.
    #[test]
    fn netlink_and_proc_agree_on_an_open_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let remote = listener.local_addr().unwrap().port();
        let client = std::net::TcpStream::connect(("127.0.0.1", remote)).unwrap();
        let local = client.local_addr().unwrap().port();
        let via_proc = proc_net_tcp_inode(local, remote).expect("/proc/net/tcp lists the socket");
        let fd_links_to_it = std::fs::read_dir("/proc/self/fd").unwrap().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == format!("socket:[{via_proc}]"))
        });
        assert!(fd_links_to_it, "inode {via_proc} is not one of this process' sockets");
        match netlink_inode(local, remote) {
            Ok(via_netlink) => {
                assert_eq!(via_netlink, Some(via_proc));
                drop(client);
                assert_eq!(
                    netlink_inode(local, remote).unwrap(),
                    None,
                    "a closed socket has no owner"
                );
            }
            Err(e) => println!("netlink sock_diag unavailable here ({e}): checked the /proc fallback only"),
        }
    }
}

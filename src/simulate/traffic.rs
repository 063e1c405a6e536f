//! Sending the probes for real, each from its own namespace: listeners on every endpoint
//! (TCP echo, UDP echo that also records what it received), TCP handshakes plus an echoed
//! nonce, UDP request/reply, one-way UDP through the VXLAN overlay, and the forged VXLAN frame
//! (`packet`) from the untrusted host. What each probe should do is `probes`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::model::Protocol;

use super::SimulateError;
use super::packet::vxlan_frame;
use super::probes::{Endpoint, Method, Outcome, Probe, inject_source};
use super::topology::{POD_PORT, Topology};

/// Datagrams each UDP listener received, with the source it saw, by (address, port).
pub type Receipts = Arc<Mutex<HashMap<(Ipv4Addr, u16), Vec<(Vec<u8>, Ipv4Addr)>>>>;

/// Start every listener in its namespace; they live until the process ends.
pub fn start_listeners(t: &Topology, eps: &[Endpoint]) -> Result<Receipts, SimulateError> {
    let receipts: Receipts = Arc::default();
    for e in eps {
        let m = &t.members[e.member];
        let addr = SocketAddrV4::new(m.addr, e.port);
        match e.proto {
            Protocol::Tcp => {
                let listener = m.ns.run_within(move || TcpListener::bind(addr))?;
                thread::spawn(move || serve_tcp(listener));
            }
            Protocol::Udp => {
                let socket = m.ns.run_within(move || UdpSocket::bind(addr))?;
                let r = Arc::clone(&receipts);
                thread::spawn(move || serve_udp(socket, addr, r));
            }
        }
    }
    Ok(receipts)
}

/// Echo the nonce, then the source address this end saw (masquerade shows here).
fn echo(payload: &[u8], peer: std::net::SocketAddr) -> Vec<u8> {
    let mut reply = payload.to_vec();
    reply.extend_from_slice(format!(" from {}", peer.ip()).as_bytes());
    reply
}

fn serve_tcp(listener: TcpListener) {
    for mut conn in listener.incoming().flatten() {
        thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 256];
            if let (Ok(n), Ok(peer)) = (conn.read(&mut buf), conn.peer_addr()) {
                let _ = conn.write_all(&echo(&buf[..n], peer));
            }
        });
    }
}

fn serve_udp(socket: UdpSocket, addr: SocketAddrV4, receipts: Receipts) {
    let mut buf = [0u8; 1500];
    while let Ok((n, peer)) = socket.recv_from(&mut buf) {
        if let (Ok(mut r), std::net::SocketAddr::V4(p)) = (receipts.lock(), peer) {
            r.entry((*addr.ip(), addr.port())).or_default().push((buf[..n].to_vec(), *p.ip()));
        }
        let _ = socket.send_to(&echo(&buf[..n], peer), peer);
    }
}

/// Send every probe at once (each from its own namespace) and collect the outcomes in order.
pub fn run(t: &Topology, probes: &[Probe], receipts: &Receipts, timeout: Duration) -> Vec<Outcome> {
    let handles: Vec<_> = probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let nonce = format!("iac-simulate-{}-{i}", std::process::id()).into_bytes();
            let p = p.clone();
            let dst = SocketAddrV4::new(p.to, p.port);
            let receipts = Arc::clone(receipts);
            let inject = match p.method {
                Method::VxlanInject { node } => {
                    let n = &t.nodes[node];
                    inject_source(t, node).map(|src| (n.mac, src, n.pod_addr()))
                }
                _ => None,
            };
            let one_way_target = match p.method {
                Method::VxlanInject { node } => (t.nodes[node].pod_addr(), POD_PORT),
                _ => (p.to, p.port),
            };
            t.members[p.from].ns.within(move || {
                Ok(match p.method {
                    Method::Tcp => tcp_probe(dst, &nonce, timeout),
                    Method::UdpEcho => udp_echo(dst, &nonce, timeout),
                    Method::UdpOneWay | Method::VxlanInject { .. } => {
                        let payload = match inject {
                            Some((mac, src, pod)) => vxlan_frame(mac, src, pod, &nonce),
                            None => nonce.clone(),
                        };
                        one_way(dst, &payload, &nonce, one_way_target, &receipts, timeout)
                    }
                })
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => Outcome::failed(format!("could not run: {e}")),
            Err(_) => Outcome::failed("probe thread panicked"),
        })
        .collect()
}

/// The source address in an echo (`NONCE from ADDR`), if the echo carries our nonce.
fn parse_echo(reply: &[u8], nonce: &[u8]) -> Option<Ipv4Addr> {
    let rest = reply.strip_prefix(nonce)?;
    std::str::from_utf8(rest).ok()?.strip_prefix(" from ")?.trim().parse().ok()
}

fn tcp_probe(dst: SocketAddrV4, nonce: &[u8], timeout: Duration) -> Outcome {
    let mut s = match TcpStream::connect_timeout(&dst.into(), timeout) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Outcome::failed("no handshake (timeout)"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Outcome::failed("reset"),
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let _ = s.set_read_timeout(Some(timeout));
    if let Err(e) = s.write_all(nonce) {
        return Outcome::failed(format!("handshake, then {e}"));
    }
    let mut reply = Vec::new();
    match s.read_to_end(&mut reply) {
        Ok(_) => match parse_echo(&reply, nonce) {
            Some(seen) => Outcome::passed(Some(seen), "handshake + echo"),
            None => Outcome::failed("handshake, wrong echo"),
        },
        Err(e) => Outcome::failed(format!("handshake, no echo ({e})")),
    }
}

fn udp_echo(dst: SocketAddrV4, nonce: &[u8], timeout: Duration) -> Outcome {
    let s = match UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect(dst).map(|_| s)) {
        Ok(s) => s,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1500];
    // Two tries within the timeout: the first datagram may wait for ARP.
    for attempt in 0..2u32 {
        if let Err(e) = s.send(nonce) {
            return Outcome::failed(e.to_string());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = if attempt == 0 { left / 2 } else { left };
        let _ = s.set_read_timeout(Some(wait.max(Duration::from_millis(1))));
        if let Some(seen) = s.recv(&mut buf).ok().and_then(|n| parse_echo(&buf[..n], nonce)) {
            return Outcome::passed(Some(seen), "reply");
        }
    }
    Outcome::failed("no reply (timeout)")
}

fn one_way(dst: SocketAddrV4, payload: &[u8], nonce: &[u8], target: (Ipv4Addr, u16), receipts: &Receipts, timeout: Duration) -> Outcome {
    let s = match UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => return Outcome::failed(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    let mut sent_again = false;
    let _ = s.send_to(payload, dst);
    while Instant::now() < deadline {
        let seen =
            receipts.lock().ok().and_then(|r| r.get(&target).and_then(|v| v.iter().find(|(d, _)| d == nonce).map(|(_, from)| *from)));
        if let Some(from) = seen {
            return Outcome::passed(Some(from), format!("received by {}:{}", target.0, target.1));
        }
        if !sent_again && deadline.saturating_duration_since(Instant::now()) < timeout / 2 {
            let _ = s.send_to(payload, dst);
            sent_again = true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    Outcome::failed("never arrived (timeout)")
}

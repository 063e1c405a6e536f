//! Packet crafting: the forged VXLAN frame the untrusted host sends to a node's UDP 8472,
//! built byte by byte (no raw socket: it travels as the payload of an ordinary UDP datagram).

use std::net::Ipv4Addr;

use super::topology::{POD_PORT, VXLAN_ID};

/// A VXLAN packet body (RFC 7348): header with VNI, then an Ethernet frame to `dst_mac`
/// carrying IPv4/UDP `src` → `pod`:POD_PORT with `payload`.
pub fn vxlan_frame(dst_mac: [u8; 6], src: Ipv4Addr, pod: Ipv4Addr, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x08, 0, 0, 0];
    f.extend_from_slice(&VXLAN_ID.to_be_bytes()[1..]);
    f.push(0);
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f.extend_from_slice(&[0x08, 0x00]);
    let udp_len = 8 + payload.len();
    let total = u16::try_from(20 + udp_len).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x1a, 0xc0, 0x40, 0x00, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&pod.octets());
    let sum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&40000u16.to_be_bytes());
    f.extend_from_slice(&POD_PORT.to_be_bytes());
    f.extend_from_slice(&u16::try_from(udp_len).unwrap_or(u16::MAX).to_be_bytes());
    f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed for IPv4)
    f.extend_from_slice(payload);
    f
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_known_header() {
        // Example header from RFC 1071 discussions: checksum field zeroed.
        let h = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7];
        assert_eq!(ipv4_checksum(&h), 0xb861);
    }

    #[test]
    fn vxlan_frame_layout() {
        let f = vxlan_frame([2, 0x1a, 0xc0, 0, 0, 1], Ipv4Addr::new(10, 42, 1, 77), Ipv4Addr::new(10, 42, 0, 2), b"x");
        assert_eq!(&f[..8], &[0x08, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(&f[8..14], &[2, 0x1a, 0xc0, 0, 0, 1]);
        assert_eq!(f.len(), 8 + 14 + 20 + 8 + 1);
    }
}

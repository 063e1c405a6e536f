//! The ports of the services k3s and PostgreSQL run on a host. Validation checks that no two
//! services of a host claim one port; `policy` opens them.

pub const K3S_API_PORT: u16 = 6443;
pub const KUBELET_PORT: u16 = 10250;
pub const FLANNEL_VXLAN_PORT: u16 = 8472;
/// Embedded etcd's client and peer ports, between servers only.
pub const ETCD_FIRST: u16 = 2379;
pub const ETCD_LAST: u16 = 2380;
pub const DNS_PORT: u16 = 53;

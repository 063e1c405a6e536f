//! NetworkPolicies of the pipeline namespace: everything is denied, in and out, except the
//! paths the pipeline uses. k3s enforces them with its embedded network-policy controller
//! (kube-router's).
//!
//! | pod | may receive | may send to |
//! | --- | --- | --- |
//! | kafka | 9092 from kafka, connect, producer; 9093 from kafka | kafka 9092/9093, DNS |
//! | kafka-connect | 8083 from register-connector and the node addresses | kafka 9092, the database's address and port, DNS |
//! | register-connector | nothing | kafka-connect 8083, DNS |
//! | demo-producer | nothing | kafka 9092, DNS |
//!
//! Why Connect's REST port is guarded: Kafka resolves config providers before it validates a
//! config, so `PUT /connector-plugins/CLASS/config/validate` with a field set to
//! `${env:PG_PASSWORD}` answers with the password in clear. Only the registration Job and the
//! API server's service proxy (`iac apply`, `iac pipeline status`) may reach it.
//!
//! The service proxy's connection starts in the API server, in the host network namespace of a
//! k3s server:
//! - to a pod on the same node it is always admitted: kube-router's pod firewall chains accept
//!   `-m addrtype --src-type LOCAL` before any policy (cloudnativelabs/kube-router PR #195,
//!   "always permit traffic from local node to the pods", fixing issue #87; the rule appears
//!   in k3s's chains as "rule to permit the traffic traffic to pods when source is the pod's
//!   local node", k3s-io/k3s issues #3373 and #5611);
//! - to a pod on another node it leaves through flannel.1 and carries that interface's address
//!   (the first address of the server's pod subnet, `10.42.N.0`), not the node address
//!   (rancher/rke2 issue #1227 shows `10.42.22.0` and `10.42.7.0` as sources;
//!   projectcalico/calico issue #1987 the same with flannel). No inventory-derived policy can
//!   name that address, since k3s hands out node subnets at registration.
//!
//! So Connect is scheduled on a k3s server (`connect.rs`), which makes the proxy path local
//! whenever the API server that `iac` talks to runs Connect's node, and the policy admits the
//! node addresses from the inventory (the firewall's `k3s_nodes` set) for the paths where the
//! node address is the source (a host-gw flannel backend, or traffic SNATed to the node).

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{CONNECT_PORT, CONTROLLER_PORT, Component, Ctx, FILE_NETWORK_POLICY, K8sError, KAFKA_PORT, Object, yaml};

/// The names of the policies, one per workload plus the default deny.
pub const DEFAULT_DENY: &str = "default-deny";
pub const DNS_PORT: i32 = 53;

pub(super) fn render(ctx: &Ctx) -> Result<String, K8sError> {
    let objects: Vec<Object> = policies(ctx).into_iter().map(Object::NetworkPolicy).collect();
    yaml(FILE_NETWORK_POLICY, &objects)
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some("TCP".into()), port: Some(IntOrString::Int(port)), ..Default::default() }
}

fn pods(ctx: &Ctx, c: Component) -> NetworkPolicyPeer {
    NetworkPolicyPeer { pod_selector: Some(ctx.selector(c)), ..Default::default() }
}

fn block(net: Ipv4Net) -> NetworkPolicyPeer {
    NetworkPolicyPeer { ip_block: Some(IPBlock { cidr: net.to_string(), ..Default::default() }), ..Default::default() }
}

fn ingress(from: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule { from: Some(from), ports: Some(ports) }
}

fn egress(to: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule { to: Some(to), ports: Some(ports) }
}

/// CoreDNS: k3s runs it in kube-system with `k8s-app: kube-dns` (what `iac verify` checks).
/// kube-proxy DNATs the DNS Service address to the CoreDNS pod before the policy is evaluated,
/// so the pod, not the Service address, is the peer.
fn dns() -> NetworkPolicyEgressRule {
    let peer = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("kubernetes.io/metadata.name".into(), "kube-system".into())])),
            ..Default::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([("k8s-app".into(), "kube-dns".into())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let udp = NetworkPolicyPort { protocol: Some("UDP".into()), port: Some(IntOrString::Int(DNS_PORT)), ..Default::default() };
    egress(vec![peer], vec![udp, tcp(DNS_PORT)])
}

fn policy(
    ctx: &Ctx,
    name: &str,
    selector: LabelSelector,
    ingress: Vec<NetworkPolicyIngressRule>,
    egress: Vec<NetworkPolicyEgressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ctx.meta(name, Component::NetworkPolicy),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(ingress),
            egress: Some(egress),
        }),
    }
}

pub(super) fn policies(ctx: &Ctx) -> Vec<NetworkPolicy> {
    use Component::{Connect, Kafka, Producer, RegisterConnector};
    let db = Ipv4Net::from(ctx.db_address);
    let nodes: Vec<NetworkPolicyPeer> = ctx.node_addresses().into_iter().map(block).collect();
    let mut connect_from = vec![pods(ctx, RegisterConnector)];
    connect_from.extend(nodes);
    vec![
        // Selects every pod and admits nothing: what the policies below do not admit is dropped.
        policy(ctx, DEFAULT_DENY, LabelSelector::default(), vec![], vec![]),
        policy(
            ctx,
            super::KAFKA,
            ctx.selector(Kafka),
            vec![
                ingress(vec![pods(ctx, Kafka), pods(ctx, Connect), pods(ctx, Producer)], vec![tcp(KAFKA_PORT)]),
                // The KRaft controllers talk among themselves only.
                ingress(vec![pods(ctx, Kafka)], vec![tcp(CONTROLLER_PORT)]),
            ],
            vec![egress(vec![pods(ctx, Kafka)], vec![tcp(KAFKA_PORT), tcp(CONTROLLER_PORT)]), dns()],
        ),
        policy(
            ctx,
            super::CONNECT,
            ctx.selector(Connect),
            vec![ingress(connect_from, vec![tcp(CONNECT_PORT)])],
            vec![egress(vec![pods(ctx, Kafka)], vec![tcp(KAFKA_PORT)]), egress(vec![block(db)], vec![tcp(i32::from(ctx.db_port))]), dns()],
        ),
        policy(
            ctx,
            super::REGISTER_JOB,
            ctx.selector(RegisterConnector),
            vec![],
            vec![egress(vec![pods(ctx, Connect)], vec![tcp(CONNECT_PORT)]), dns()],
        ),
        policy(
            ctx,
            super::PRODUCER_JOB,
            ctx.selector(Producer),
            vec![],
            vec![egress(vec![pods(ctx, Kafka)], vec![tcp(KAFKA_PORT)]), dns()],
        ),
    ]
}

//! A small evaluator of Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), to ask the
//! rendered policies what they admit: "may this source reach that pod on this port?".
//!
//! The rules, from the API reference of NetworkPolicySpec / NetworkPolicyPeer / NetworkPolicyPort:
//! - A pod is isolated for ingress (egress) when some policy in its namespace selects it and
//!   lists `Ingress` (`Egress`) in `policyTypes`. A non-isolated direction admits everything.
//! - An isolated direction admits a connection when one rule of one selecting policy matches
//!   it: a peer (`from`/`to`; missing or empty means every peer) and a port (`ports`; missing
//!   or empty means every port). Policies are additive: there is no deny rule.
//! - A peer with `podSelector` only selects pods in the policy's own namespace; with
//!   `namespaceSelector` only, every pod of the matching namespaces; with both, the matching
//!   pods of the matching namespaces; `ipBlock` selects addresses (`cidr` minus `except`).
//! - A connection needs both: egress admitted at the source pod and ingress at the destination.
//! - `protocol` defaults to TCP; `endPort` makes a range.
//!
//! Not modelled: named ports (the renderers use numbers), and the implementation detail that
//! kube-router also admits traffic from a pod's own node (see src/render/k8s/network_policy.rs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Something that sends or receives: a pod (namespace, labels, address) or a bare address.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Pod { name: String, namespace: String, labels: BTreeMap<String, String>, ip: Ipv4Addr },
    Address { name: String, ip: Ipv4Addr },
}

impl Endpoint {
    pub fn name(&self) -> &str {
        match self {
            Endpoint::Pod { name, .. } | Endpoint::Address { name, .. } => name,
        }
    }
    pub fn ip(&self) -> Ipv4Addr {
        match self {
            Endpoint::Pod { ip, .. } | Endpoint::Address { ip, .. } => *ip,
        }
    }
}

pub struct Cluster {
    pub policies: Vec<NetworkPolicy>,
    /// Namespace name -> its labels (`kubernetes.io/metadata.name` is set automatically).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

pub fn selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = sel.match_expressions.iter().flatten().all(|e| {
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            other => panic!("unknown selector operator {other}"),
        }
    });
    by_labels && by_expressions
}

impl Cluster {
    pub fn new(policies: Vec<NetworkPolicy>, namespaces: &[&str]) -> Self {
        let namespaces = namespaces
            .iter()
            .map(|n| (n.to_string(), BTreeMap::from([("kubernetes.io/metadata.name".to_string(), n.to_string())])))
            .collect();
        Self { policies, namespaces }
    }

    fn ns_labels(&self, ns: &str) -> BTreeMap<String, String> {
        self.namespaces.get(ns).cloned().unwrap_or_else(|| panic!("namespace {ns} not declared"))
    }

    fn peer_matches(&self, policy_ns: &str, peer: &NetworkPolicyPeer, other: &Endpoint) -> bool {
        if let Some(block) = &peer.ip_block {
            let cidr: Ipv4Net = block.cidr.parse().expect("ipBlock cidr");
            let excepted = block.except.iter().flatten().any(|e| e.parse::<Ipv4Net>().expect("except").contains(&other.ip()));
            return cidr.contains(&other.ip()) && !excepted;
        }
        let Endpoint::Pod { namespace, labels, .. } = other else { return false };
        let ns_ok = match &peer.namespace_selector {
            Some(sel) => selector_matches(sel, &self.ns_labels(namespace)),
            None => namespace == policy_ns,
        };
        let pod_ok = peer.pod_selector.as_ref().is_none_or(|sel| selector_matches(sel, labels));
        ns_ok && pod_ok
    }

    fn port_matches(ports: Option<&Vec<NetworkPolicyPort>>, proto: &str, port: u16) -> bool {
        let Some(ports) = ports.filter(|p| !p.is_empty()) else { return true };
        ports.iter().any(|p| {
            let p_proto = p.protocol.as_deref().unwrap_or("TCP");
            let first = match &p.port {
                None => return p_proto == proto,
                Some(IntOrString::Int(n)) => *n,
                Some(IntOrString::String(s)) => panic!("named port {s} is not modelled"),
            };
            let last = p.end_port.unwrap_or(first);
            p_proto == proto && (first..=last).contains(&i32::from(port))
        })
    }

    /// The policies that select `pod` for `direction` ("Ingress" / "Egress").
    fn selecting<'a>(&'a self, pod: &'a Endpoint, direction: &'a str) -> impl Iterator<Item = &'a NetworkPolicy> + 'a {
        let (ns, labels) = match pod {
            Endpoint::Pod { namespace, labels, .. } => (Some(namespace.as_str()), Some(labels)),
            Endpoint::Address { .. } => (None, None),
        };
        self.policies.iter().filter(move |p| {
            let (Some(ns), Some(labels)) = (ns, labels) else { return false };
            let spec = p.spec.as_ref().expect("spec");
            p.metadata.namespace.as_deref() == Some(ns)
                && selector_matches(spec.pod_selector.as_ref().unwrap_or(&LabelSelector::default()), labels)
                && spec.policy_types.iter().flatten().any(|t| t == direction)
        })
    }

    fn egress_allows(&self, src: &Endpoint, dst: &Endpoint, proto: &str, port: u16) -> bool {
        let policies: Vec<_> = self.selecting(src, "Egress").collect();
        if policies.is_empty() {
            return true;
        }
        policies.iter().any(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            p.spec.as_ref().and_then(|s| s.egress.as_ref()).into_iter().flatten().any(|rule| {
                let peer_ok =
                    rule.to.as_ref().filter(|t| !t.is_empty()).is_none_or(|to| to.iter().any(|peer| self.peer_matches(ns, peer, dst)));
                peer_ok && Self::port_matches(rule.ports.as_ref(), proto, port)
            })
        })
    }

    fn ingress_allows(&self, src: &Endpoint, dst: &Endpoint, proto: &str, port: u16) -> bool {
        let policies: Vec<_> = self.selecting(dst, "Ingress").collect();
        if policies.is_empty() {
            return true;
        }
        policies.iter().any(|p| {
            let ns = p.metadata.namespace.as_deref().unwrap_or_default();
            p.spec.as_ref().and_then(|s| s.ingress.as_ref()).into_iter().flatten().any(|rule| {
                let peer_ok = rule
                    .from
                    .as_ref()
                    .filter(|f| !f.is_empty())
                    .is_none_or(|from| from.iter().any(|peer| self.peer_matches(ns, peer, src)));
                peer_ok && Self::port_matches(rule.ports.as_ref(), proto, port)
            })
        })
    }

    /// May `src` open a connection to `dst` on `proto`/`port`?
    pub fn allows(&self, src: &Endpoint, dst: &Endpoint, proto: &str, port: u16) -> bool {
        self.egress_allows(src, dst, proto, port) && self.ingress_allows(src, dst, proto, port)
    }
}

//! Kubernetes NetworkPolicy (networking.k8s.io/v1) semantics, enough to
//! decide whether a set of rendered policies lets one endpoint open a
//! connection to another: a pod is isolated for a direction once any policy
//! of that direction selects it, and then a connection needs a rule of one of
//! those policies that matches the peer and the port. Both directions must
//! allow it (the sender's egress, the receiver's ingress).
//!
//! `ipBlock` peers are not modelled: a policy that uses one is reported as an
//! error, never guessed at.

use std::collections::BTreeMap;

use serde_json::Value;

pub type Labels = BTreeMap<String, String>;

/// A container port a pod declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub number: u16,
    pub protocol: String,
}

/// One end of a connection.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A pod: its namespace (with that namespace's labels) and its labels.
    Pod {
        namespace: String,
        namespace_labels: Labels,
        labels: Labels,
        ports: Vec<ContainerPort>,
    },
    /// Anything that is not a pod network endpoint: the API server, a node,
    /// the internet.
    Address,
}

impl Endpoint {
    /// A pod in `namespace`; the namespace carries the label Kubernetes sets
    /// on every namespace, kubernetes.io/metadata.name, plus `namespace_labels`.
    pub fn pod(
        namespace: &str,
        mut namespace_labels: Labels,
        labels: Labels,
        ports: Vec<ContainerPort>,
    ) -> Self {
        namespace_labels.insert("kubernetes.io/metadata.name".into(), namespace.into());
        Endpoint::Pod {
            namespace: namespace.into(),
            namespace_labels,
            labels,
            ports,
        }
    }
}

impl Endpoint {
    /// A pod's labels (none for an address).
    pub fn labels(&self) -> Option<&Labels> {
        match self {
            Endpoint::Pod { labels, .. } => Some(labels),
            Endpoint::Address => None,
        }
    }

    /// A pod's namespace labels (none for an address).
    pub fn namespace_labels(&self) -> Option<&Labels> {
        match self {
            Endpoint::Pod {
                namespace_labels, ..
            } => Some(namespace_labels),
            Endpoint::Address => None,
        }
    }

    /// The ports a pod declares (none for an address).
    pub fn ports(&self) -> &[ContainerPort] {
        match self {
            Endpoint::Pod { ports, .. } => ports,
            Endpoint::Address => &[],
        }
    }
}

/// A connection to check: `from` opens `port`/`protocol` on `to`.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub from: &'a Endpoint,
    pub to: &'a Endpoint,
    pub port: u16,
    pub protocol: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn type_name(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
    fn rules_key(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
    fn peers_key(self) -> &'static str {
        match self {
            Direction::Ingress => "from",
            Direction::Egress => "to",
        }
    }
}

/// Whether a label selector (`matchLabels`, `matchExpressions`) selects
/// `labels`. An empty selector selects everything.
pub fn selects(selector: &Value, labels: &Labels) -> Result<bool, String> {
    if let Some(match_labels) = selector["matchLabels"].as_object() {
        for (key, value) in match_labels {
            if labels.get(key).map(String::as_str) != value.as_str() {
                return Ok(false);
            }
        }
    }
    for expression in selector["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let key = expression["key"].as_str().ok_or("expression without key")?;
        let values: Vec<&str> = expression["values"]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let value = labels.get(key).map(String::as_str);
        let matched = match expression["operator"].as_str() {
            Some("In") => value.is_some_and(|v| values.contains(&v)),
            Some("NotIn") => !value.is_some_and(|v| values.contains(&v)),
            Some("Exists") => value.is_some(),
            Some("DoesNotExist") => value.is_none(),
            other => return Err(format!("unknown selector operator {other:?}")),
        };
        if !matched {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The policy types a policy has: as written, or by the API's default
/// (Ingress always, Egress when it has egress rules).
pub fn policy_types(policy: &Value) -> Vec<String> {
    match policy["spec"]["policyTypes"].as_array() {
        Some(types) => types
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        None => {
            let mut types = vec!["Ingress".to_owned()];
            if policy["spec"].get("egress").is_some() {
                types.push("Egress".into());
            }
            types
        }
    }
}

/// The policies of `direction` that select `pod` (empty for a non-pod).
fn isolating<'a>(
    policies: &'a [Value],
    pod: &Endpoint,
    direction: Direction,
) -> Result<Vec<&'a Value>, String> {
    let Endpoint::Pod {
        namespace, labels, ..
    } = pod
    else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for policy in policies {
        if policy["metadata"]["namespace"].as_str() != Some(namespace) {
            continue;
        }
        if !policy_types(policy)
            .iter()
            .any(|t| t == direction.type_name())
        {
            continue;
        }
        if selects(&policy["spec"]["podSelector"], labels)? {
            found.push(policy);
        }
    }
    Ok(found)
}

/// Whether a rule's peer (`from`/`to` entry) of a policy in
/// `policy_namespace` matches `endpoint`.
fn peer_matches(peer: &Value, policy_namespace: &str, endpoint: &Endpoint) -> Result<bool, String> {
    if peer.get("ipBlock").is_some() {
        return Err("ipBlock peers are not modelled".into());
    }
    let Endpoint::Pod {
        namespace,
        namespace_labels,
        labels,
        ..
    } = endpoint
    else {
        // Pod and namespace selectors only ever match pods.
        return Ok(false);
    };
    let namespace_ok = match peer.get("namespaceSelector") {
        Some(selector) => selects(selector, namespace_labels)?,
        None => namespace == policy_namespace,
    };
    let pod_ok = match peer.get("podSelector") {
        Some(selector) => selects(selector, labels)?,
        None => true,
    };
    Ok(namespace_ok && pod_ok)
}

/// Whether a rule's `ports` admit `port`/`protocol` on `destination` (whose
/// named ports resolve named policy ports).
fn ports_match(
    rule: &Value,
    destination: &Endpoint,
    port: u16,
    protocol: &str,
) -> Result<bool, String> {
    let Some(ports) = rule["ports"].as_array().filter(|ports| !ports.is_empty()) else {
        return Ok(true);
    };
    for entry in ports {
        let entry_protocol = entry["protocol"].as_str().unwrap_or("TCP");
        if entry_protocol != protocol {
            continue;
        }
        let matched = match &entry["port"] {
            Value::Null => true,
            Value::Number(number) => {
                let first = number.as_u64().ok_or("port is not a number")?;
                let last = entry["endPort"].as_u64().unwrap_or(first);
                (first..=last).contains(&u64::from(port))
            }
            Value::String(name) => match destination {
                Endpoint::Pod { ports, .. } => ports.iter().any(|p| {
                    p.name.as_deref() == Some(name) && p.number == port && p.protocol == protocol
                }),
                Endpoint::Address => false,
            },
            other => return Err(format!("port {other} is neither a number nor a name")),
        };
        if matched {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `direction` lets the connection through at the end it governs
/// (the sender for egress, the receiver for ingress).
pub fn allows_direction(
    policies: &[Value],
    connection: Connection<'_>,
    direction: Direction,
) -> Result<bool, String> {
    let (governed, peer) = match direction {
        Direction::Ingress => (connection.to, connection.from),
        Direction::Egress => (connection.from, connection.to),
    };
    let selecting = isolating(policies, governed, direction)?;
    if selecting.is_empty() {
        return Ok(true);
    }
    for policy in selecting {
        let namespace = policy["metadata"]["namespace"].as_str().unwrap_or_default();
        for rule in policy["spec"][direction.rules_key()]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let peers = rule[direction.peers_key()]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            let mut peer_ok = peers.is_empty();
            for candidate in peers {
                if peer_matches(candidate, namespace, peer)? {
                    peer_ok = true;
                }
            }
            if peer_ok && ports_match(rule, connection.to, connection.port, connection.protocol)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether the policies let the connection through: the sender's egress and
/// the receiver's ingress.
pub fn allows(policies: &[Value], connection: Connection<'_>) -> Result<bool, String> {
    Ok(allows_direction(policies, connection, Direction::Egress)?
        && allows_direction(policies, connection, Direction::Ingress)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn web(namespace: &str, app: &str) -> Endpoint {
        Endpoint::pod(
            namespace,
            Labels::new(),
            labels(&[("app", app)]),
            vec![ContainerPort {
                name: Some("http".into()),
                number: 8080,
                protocol: "TCP".into(),
            }],
        )
    }

    fn tcp<'a>(from: &'a Endpoint, to: &'a Endpoint, port: u16) -> Connection<'a> {
        Connection {
            from,
            to,
            port,
            protocol: "TCP",
        }
    }

    fn deny_all() -> Value {
        json!({"metadata": {"name": "deny", "namespace": "a"},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
    }

    #[test]
    fn without_policies_everything_is_allowed() {
        let (x, y) = (web("a", "x"), web("b", "y"));
        assert_eq!(allows(&[], tcp(&x, &y, 1)), Ok(true));
    }

    #[test]
    fn a_deny_all_policy_isolates_only_its_own_namespace() {
        let policies = [deny_all()];
        let (x, y, other) = (web("a", "x"), web("a", "y"), web("b", "z"));
        assert_eq!(allows(&policies, tcp(&x, &y, 8080)), Ok(false));
        assert_eq!(
            allows(&policies, tcp(&other, &Endpoint::Address, 80)),
            Ok(true)
        );
        // Egress from the isolated namespace to an unisolated pod: denied.
        assert_eq!(allows(&policies, tcp(&x, &other, 8080)), Ok(false));
    }

    #[test]
    fn both_ends_must_allow_and_ports_must_match() {
        let allow_in = json!({"metadata": {"name": "in", "namespace": "a"},
            "spec": {"podSelector": {"matchLabels": {"app": "y"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "x"}}}],
                                  "ports": [{"port": "http"}]}]}});
        let allow_out = json!({"metadata": {"name": "out", "namespace": "a"},
            "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "y"}}}],
                                 "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}]}]}});
        let (x, y, z) = (web("a", "x"), web("a", "y"), web("a", "z"));
        let only_ingress = [deny_all(), allow_in.clone()];
        assert_eq!(allows(&only_ingress, tcp(&x, &y, 8080)), Ok(false));
        let both = [deny_all(), allow_in, allow_out];
        assert_eq!(allows(&both, tcp(&x, &y, 8080)), Ok(true));
        assert_eq!(
            allows(&both, tcp(&x, &y, 8081)),
            Ok(false),
            "named port is 8080"
        );
        assert_eq!(allows(&both, tcp(&z, &y, 8080)), Ok(false), "z is not x");
        let udp = Connection {
            protocol: "UDP",
            ..tcp(&x, &y, 8080)
        };
        assert_eq!(allows(&both, udp), Ok(false));
    }

    #[test]
    fn namespace_and_pod_selectors_in_one_peer_both_apply() {
        let policy = json!({"metadata": {"name": "p", "namespace": "a"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
                        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["ctl"]}]}}]}]}});
        let target = web("a", "y");
        let policies = [policy];
        for (source, expected) in [
            (web("ops", "ctl"), true),
            (web("ops", "other"), false),
            (web("a", "ctl"), false),
            (web("dev", "ctl"), false),
        ] {
            assert_eq!(
                allows(&policies, tcp(&source, &target, 8080)),
                Ok(expected),
                "{source:?}"
            );
        }
    }

    #[test]
    fn a_rule_without_peers_admits_any_address_but_ip_blocks_are_refused() {
        let dns = json!({"metadata": {"name": "dns", "namespace": "a"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]}});
        let x = web("a", "x");
        let policies = [deny_all(), dns];
        let lookup = Connection {
            protocol: "UDP",
            ..tcp(&x, &Endpoint::Address, 53)
        };
        assert_eq!(allows(&policies, lookup), Ok(true));
        assert_eq!(
            allows(&policies, tcp(&x, &Endpoint::Address, 53)),
            Ok(false)
        );
        let block = json!({"metadata": {"name": "b", "namespace": "a"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}});
        assert!(allows(&[block], tcp(&x, &Endpoint::Address, 443)).is_err());
    }

    #[test]
    fn default_policy_types_follow_the_api() {
        let ingress_only = json!({"spec": {"podSelector": {}, "ingress": []}});
        assert_eq!(policy_types(&ingress_only), ["Ingress"]);
        let both = json!({"spec": {"podSelector": {}, "egress": []}});
        assert_eq!(policy_types(&both), ["Ingress", "Egress"]);
    }
}

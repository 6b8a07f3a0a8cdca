//! The routing tree: Alertmanager-style matchers on each alert's labels, `continue`, and
//! the channels of the routes an alert stops at.

use std::collections::BTreeSet;

use crate::config::RouteConfig;
pub use crate::matcher::{MatchOp, Matcher};
use crate::payload::Labels;

/// Where an alert goes: the channels of every route it stops at.
#[derive(Debug, Clone)]
pub struct Router {
    root: RouteConfig,
}

impl Router {
    /// A router over a checked routing tree.
    pub fn new(root: RouteConfig) -> Self {
        Self { root }
    }

    /// The channels for an alert with these labels. The root always matches; a matching
    /// child takes the alert unless it says `continue`, and an alert no child takes stays
    /// with its parent's channels.
    pub fn channels(&self, labels: &impl Labels) -> BTreeSet<String> {
        self.targets(labels).channels
    }

    /// The channels, escalation policies and remediation actions for an alert with these
    /// labels.
    pub fn targets(&self, labels: &impl Labels) -> Targets {
        let mut out = Targets::default();
        let own = Own {
            channels: &self.root.channels,
            escalation: self.root.escalation.as_deref(),
            remediation: self.root.remediation.as_deref(),
        };
        walk(&self.root, own, labels, &mut out);
        out
    }
}

/// Where an alert goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Channels told directly.
    pub channels: BTreeSet<String>,
    /// Escalation policies the alert climbs.
    pub policies: BTreeSet<String>,
    /// Remediation actions of the routes it stops at.
    pub remediations: BTreeSet<String>,
}

/// What a route sends to: its own, or else its parent's.
#[derive(Clone, Copy)]
struct Own<'a> {
    channels: &'a [String],
    escalation: Option<&'a str>,
    remediation: Option<&'a str>,
}

/// Adds the targets of the routes under `route` that `labels` stop at; `route` itself has
/// matched. A route with neither channels nor an escalation policy of its own has its
/// parent's, as an Alertmanager route without a receiver has its parent's receiver. A
/// remediation action is inherited on its own: a route that names none has its parent's.
fn walk(route: &RouteConfig, inherited: Own<'_>, labels: &impl Labels, out: &mut Targets) {
    let mut own = if route.has_parents_targets() {
        inherited
    } else {
        Own {
            channels: &route.channels,
            escalation: route.escalation.as_deref(),
            remediation: inherited.remediation,
        }
    };
    if let Some(action) = route.remediation.as_deref() {
        own.remediation = Some(action);
    }
    let mut taken = false;
    for child in &route.routes {
        if child.matchers.iter().all(|m| m.matches(labels)) {
            walk(child, own, labels, out);
            taken = true;
            if !child.continue_matching {
                break;
            }
        }
    }
    if !taken {
        out.channels.extend(own.channels.iter().cloned());
        if let Some(policy) = own.escalation {
            out.policies.insert(policy.to_owned());
        }
        if let Some(action) = own.remediation {
            out.remediations.insert(action.to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::LabelSet;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn route(matchers: &[&str], channels: &[&str], cont: bool) -> RouteConfig {
        RouteConfig {
            matchers: matchers
                .iter()
                .map(|m| Matcher::parse(m).expect("matcher"))
                .collect(),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            continue_matching: cont,
            escalation: None,
            remediation: None,
            routes: Vec::new(),
        }
    }

    #[test]
    fn matchers() {
        let l = labels(&[("severity", "critical"), ("service", "gateway")]);
        assert!(
            Matcher::parse("severity=\"critical\"")
                .expect("m")
                .matches(&l)
        );
        assert!(
            Matcher::parse("severity = critical")
                .expect("m")
                .matches(&l)
        );
        assert!(
            Matcher::parse("service=~\"gateway|db\"")
                .expect("m")
                .matches(&l)
        );
        assert!(!Matcher::parse("service=~\"gate\"").expect("m").matches(&l));
        assert!(Matcher::parse("service!~\"db.*\"").expect("m").matches(&l));
        assert!(Matcher::parse("team!=\"mcp\"").expect("m").matches(&l));
        assert!(Matcher::parse("team=\"\"").expect("m").matches(&l));
        assert!(Matcher::parse("severity").is_err());
        assert!(Matcher::parse("1x=\"a\"").is_err());
        assert!(Matcher::parse("a=~\"(\"").is_err());
        assert!(Matcher::parse("a=\"open").is_err());
    }

    #[test]
    fn severity_routing_with_continue() {
        let mut root = route(&[], &["log"], false);
        root.routes = vec![
            route(&["severity=\"critical\""], &["pager"], true),
            route(&["severity=~\"critical|warning\""], &["chat"], false),
            route(&["severity=\"info\""], &["log"], false),
        ];
        let router = Router::new(root);
        let set = |s: &[&str]| s.iter().map(|c| (*c).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(
            router.channels(&labels(&[("severity", "critical")])),
            set(&["chat", "pager"])
        );
        assert_eq!(
            router.channels(&labels(&[("severity", "warning")])),
            set(&["chat"])
        );
        assert_eq!(
            router.channels(&labels(&[("severity", "info")])),
            set(&["log"])
        );
        assert_eq!(router.channels(&labels(&[])), set(&["log"]));
    }

    #[test]
    fn a_route_without_channels_has_its_parents() {
        let mut team = route(&["team=\"mcp\""], &["chat"], false);
        team.routes = vec![route(&["severity=\"critical\""], &[], false)];
        let mut root = route(&[], &["log"], false);
        root.routes = vec![team, route(&["team=\"db\""], &[], false)];
        let router = Router::new(root);
        let set = |s: &[&str]| s.iter().map(|c| (*c).to_owned()).collect::<BTreeSet<_>>();
        let l = labels(&[("team", "mcp"), ("severity", "critical")]);
        assert_eq!(router.channels(&l), set(&["chat"]));
        assert_eq!(router.channels(&labels(&[("team", "db")])), set(&["log"]));
    }

    #[test]
    fn an_escalation_route_climbs_its_policy_and_is_inherited() {
        let mut critical = route(&["severity=\"critical\""], &[], true);
        critical.escalation = Some("default".into());
        critical.routes = vec![route(&["team=\"db\""], &[], false)];
        let mut root = route(&[], &["log"], false);
        root.routes = vec![critical, route(&[], &["chat"], false)];
        let router = Router::new(root);
        let targets = router.targets(&labels(&[("severity", "critical"), ("team", "db")]));
        assert_eq!(targets.policies.iter().collect::<Vec<_>>(), ["default"]);
        assert_eq!(targets.channels.iter().collect::<Vec<_>>(), ["chat"]);
        let warning = router.targets(&labels(&[("severity", "warning")]));
        assert!(warning.policies.is_empty());
    }

    #[test]
    fn a_remediation_is_inherited_unless_a_route_names_its_own() {
        let mut db = route(&["component=\"db\""], &[], false);
        db.remediation = Some("failover".into());
        let mut gateway = route(&["service=\"gateway\""], &["chat"], false);
        gateway.remediation = Some("restart-gateway".into());
        gateway.routes = vec![route(&["env=\"staging\""], &["log"], false), db];
        let mut root = route(&[], &["log"], false);
        root.routes = vec![gateway];
        let router = Router::new(root);
        let of = |pairs: &[(&str, &str)]| {
            router
                .targets(&labels(pairs))
                .remediations
                .into_iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(of(&[("service", "gateway")]), ["restart-gateway"]);
        assert_eq!(
            of(&[("service", "gateway"), ("env", "staging")]),
            ["restart-gateway"]
        );
        assert_eq!(
            of(&[("service", "gateway"), ("component", "db")]),
            ["failover"]
        );
        assert!(of(&[("service", "db")]).is_empty());
    }
}

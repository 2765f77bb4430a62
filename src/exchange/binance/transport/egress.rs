//! Egress IP groups: the local addresses requests leave from, and which strategy uses which.
//!
//! Binance counts request weight, raw requests and connection attempts per client IP, so each
//! group is a set of pools of its own (`Scope::Ip(n)`, n = the group's index): the honest way to
//! more request weight. Group 0 is the first configured (or the machine's default route when none
//! is); the client's own work (start-up, streams, lookups) leaves from it.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::ledger::Scope;

/// One egress IP group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpGroup {
    pub name: String,
    /// The local address its connections are bound to; `None`: the operating system chooses.
    pub source: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("ip_groups: a group needs a name")]
    NoName,
    #[error("ip_groups: the name {0:?} is given twice")]
    DuplicateName(String),
    #[error("ip_groups: {first} and {second} both leave from {address}: each group needs its own address")]
    DuplicateSource {
        first: String,
        second: String,
        address: IpAddr,
    },
    #[error("ip_groups: at most {} groups", u16::MAX)]
    TooMany,
    #[error("strategy {strategy} names the IP group {group:?}, which is not configured (known: {known})")]
    UnknownGroup {
        strategy: String,
        group: String,
        known: String,
    },
}

/// The configured groups and each strategy's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    groups: Vec<IpGroup>,
    by_strategy: HashMap<String, u16>,
}

impl Default for Egress {
    /// One group leaving from wherever the operating system routes it.
    fn default() -> Self {
        Egress {
            groups: vec![IpGroup {
                name: "default".into(),
                source: None,
            }],
            by_strategy: HashMap::new(),
        }
    }
}

impl Egress {
    /// `groups` in order (the first is the default), and `(strategy, group name)` choices.
    pub fn new(groups: Vec<IpGroup>, choices: &[(String, String)]) -> Result<Egress, EgressError> {
        if groups.is_empty() {
            return Egress::default().with_choices(choices);
        }
        if groups.len() > usize::from(u16::MAX) {
            return Err(EgressError::TooMany);
        }
        for (i, group) in groups.iter().enumerate() {
            if group.name.trim().is_empty() {
                return Err(EgressError::NoName);
            }
            for earlier in &groups[..i] {
                if earlier.name == group.name {
                    return Err(EgressError::DuplicateName(group.name.clone()));
                }
                if let (Some(a), Some(b)) = (earlier.source, group.source) {
                    if a == b {
                        return Err(EgressError::DuplicateSource {
                            first: earlier.name.clone(),
                            second: group.name.clone(),
                            address: a,
                        });
                    }
                }
            }
        }
        Egress {
            groups,
            by_strategy: HashMap::new(),
        }
        .with_choices(choices)
    }

    fn with_choices(mut self, choices: &[(String, String)]) -> Result<Egress, EgressError> {
        for (strategy, name) in choices {
            let Some(index) = self.groups.iter().position(|g| &g.name == name) else {
                return Err(EgressError::UnknownGroup {
                    strategy: strategy.clone(),
                    group: name.clone(),
                    known: self.names().join(", "),
                });
            };
            // `new` allows at most u16::MAX groups.
            self.by_strategy.insert(strategy.clone(), index as u16);
        }
        Ok(self)
    }

    pub fn groups(&self) -> &[IpGroup] {
        &self.groups
    }

    pub fn names(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.name.as_str()).collect()
    }

    /// How many groups (at least one).
    pub fn count(&self) -> u16 {
        self.groups.len() as u16
    }

    /// The group `strategy` sends from: the one it named, else the first.
    pub fn group_of(&self, strategy: &str) -> u16 {
        self.by_strategy.get(strategy).copied().unwrap_or(0)
    }

    pub fn source(&self, group: u16) -> Option<IpAddr> {
        self.groups.get(usize::from(group)).and_then(|g| g.source)
    }

    /// The group's name, for a pool counted by `Scope::Ip(group)`.
    pub fn name(&self, group: u16) -> Option<&str> {
        self.groups.get(usize::from(group)).map(|g| g.name.as_str())
    }

    /// Each group's IP scope and name.
    pub fn named_scopes(&self) -> impl Iterator<Item = (Scope, String)> + '_ {
        // `new` allows at most u16::MAX groups.
        (0u16..).zip(&self.groups).map(|(i, g)| (Scope::Ip(i), g.name.clone()))
    }

    /// Human name of a pool's scope: the IP group's name for an IP scope.
    pub fn scope_name(&self, scope: Scope) -> String {
        match scope {
            Scope::Ip(n) => match self.name(n) {
                Some(name) => format!("ip:{name}"),
                None => scope.to_string(),
            },
            other => other.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, source: &str) -> IpGroup {
        IpGroup {
            name: name.into(),
            source: Some(source.parse().unwrap()),
        }
    }

    #[test]
    fn strategies_use_the_group_they_name_else_the_first() {
        let egress = Egress::new(
            vec![group("main", "127.0.0.1"), group("spare", "127.0.0.2")],
            &[("poller".into(), "spare".into())],
        )
        .unwrap();
        assert_eq!((egress.group_of("poller"), egress.group_of("other")), (1, 0));
        assert_eq!(egress.source(1), Some("127.0.0.2".parse().unwrap()));
        assert_eq!(egress.scope_name(Scope::Ip(1)), "ip:spare");
        assert_eq!(Egress::default().count(), 1);
    }

    #[test]
    fn bad_groups_are_refused_in_one_line() {
        let err = Egress::new(vec![group("a", "127.0.0.2"), group("b", "127.0.0.2")], &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ip_groups: a and b both leave from 127.0.0.2: each group needs its own address"
        );
        let err = Egress::new(vec![group("a", "127.0.0.1")], &[("s".into(), "b".into())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "strategy s names the IP group \"b\", which is not configured (known: a)"
        );
        assert!(matches!(
            Egress::new(vec![group("a", "127.0.0.1"), group("a", "127.0.0.2")], &[]),
            Err(EgressError::DuplicateName(_))
        ));
    }
}

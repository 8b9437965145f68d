//! Intents for one workload, and which intents each converted rule grants.
//!
//! meshward gives a request exactly one intent, the most specific template
//! that accepts its method and host; Istio matches every rule's operations
//! independently. So the importer declares one intent per (path pattern,
//! method class, host) that any operation or exclusion mentions: the
//! *method classes* split the known methods where some operation tells them
//! apart, and an exclusion (`notPaths`) gets its own, more specific intent
//! that the excluding rule does not grant. A rule is then granted an intent
//! when every request meshward classifies into it is one the rule's
//! operations match. Which requests land where is asked of the engine itself
//! (a probe policy compiled with the same intents) over representative
//! requests that cover every distinction the patterns can make: each
//! pattern's literal prefixes, a fresh segment below each, a string-prefix
//! near miss, each method class and each host with and without a port.

use std::collections::{BTreeMap, BTreeSet};

use meshward_engine::model::Method;

use super::sem::{PathPat, RuleSem};

/// One declared intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    /// The intent's name.
    pub name: String,
    /// Its path pattern.
    pub pattern: PathPat,
    /// Its methods; `None` = every method.
    pub methods: Option<Vec<String>>,
    /// Its host (lowercase, no port); `None` = any host.
    pub host: Option<String>,
}

/// A request shape: method, authority, path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    /// `:method`.
    pub method: String,
    /// `:authority`.
    pub authority: String,
    /// `:path`.
    pub path: String,
}

/// The authority used when no rule names a host.
pub const DEFAULT_AUTHORITY: &str = "workload.import-probe";
/// A segment no policy names.
pub const FRESH_SEGMENT: &str = "import-probe";

fn all_methods() -> Vec<String> {
    Method::ALL.iter().map(|m| m.as_str().to_owned()).collect()
}

/// Splits the known methods into classes no operation tells apart.
pub fn method_classes(rules: &[RuleSem]) -> Vec<Vec<String>> {
    let ops: Vec<_> = rules
        .iter()
        .filter_map(|r| r.ops.as_ref())
        .flatten()
        .collect();
    let mut classes: BTreeMap<Vec<bool>, Vec<String>> = BTreeMap::new();
    for method in all_methods() {
        let signature: Vec<bool> = ops
            .iter()
            .map(|op| op.methods.as_ref().is_none_or(|m| m.contains(&method)))
            .collect();
        classes.entry(signature).or_default().push(method);
    }
    let mut out: Vec<Vec<String>> = classes.into_values().collect();
    // Stable order: by the first method's position in the known list.
    let order = all_methods();
    out.sort_by_key(|c| c.first().and_then(|m| order.iter().position(|o| o == m)));
    out
}

fn sanitize(segment: &str) -> String {
    let s: String = segment
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "x".to_owned()
    } else {
        s
    }
}

fn intent_name(pattern: &PathPat, methods: Option<&[String]>, host: Option<&str>) -> String {
    let mut parts: Vec<String> = match pattern {
        PathPat::Exact(segs) if segs.is_empty() => vec!["root".to_owned()],
        PathPat::Exact(segs) => segs.iter().map(|s| sanitize(s)).collect(),
        PathPat::Below(segs) => {
            let mut p: Vec<String> = segs.iter().map(|s| sanitize(s)).collect();
            p.push("sub".to_owned());
            p
        }
        PathPat::Any => vec!["any".to_owned()],
    };
    if let Some(methods) = methods {
        parts.push(
            methods
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join("-"),
        );
    }
    if let Some(host) = host {
        parts.push(format!("host-{}", host.replace('.', "-")));
    }
    let name = parts.join(".");
    if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name
    } else {
        format!("p.{name}")
    }
}

/// The intents the workload's rules need.
pub fn atoms(rules: &[RuleSem], classes: &[Vec<String>]) -> Vec<Atom> {
    let every_method = classes.len() <= 1;
    // (pattern, class index) -> host options (None = any host).
    let mut wanted: BTreeMap<(PathPat, usize), BTreeSet<Option<String>>> = BTreeMap::new();
    for op in rules.iter().filter_map(|r| r.ops.as_ref()).flatten() {
        let mut patterns: Vec<PathPat> = op.paths.clone();
        if patterns.is_empty() {
            patterns.push(PathPat::Any);
        }
        patterns.extend(op.not_paths.iter().cloned());
        for pattern in patterns {
            for (ci, class) in classes.iter().enumerate() {
                let admitted = op
                    .methods
                    .as_ref()
                    .is_none_or(|m| class.iter().any(|c| m.contains(c)));
                if !admitted {
                    continue;
                }
                let hosts = wanted.entry((pattern.clone(), ci)).or_default();
                match &op.hosts {
                    None => {
                        hosts.insert(None);
                    }
                    Some(names) => hosts.extend(names.iter().cloned().map(Some)),
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for ((pattern, ci), hosts) in wanted {
        let specific: Vec<Option<String>> = hosts.iter().filter(|h| h.is_some()).cloned().collect();
        // An any-host intent would overlap the host-specific ones (E011);
        // the specific ones win and the grant check reports what is lost.
        let hosts = if specific.is_empty() {
            vec![None]
        } else {
            specific
        };
        let methods = (!every_method).then(|| classes.get(ci).cloned()).flatten();
        for host in hosts {
            let mut name = intent_name(&pattern, methods.as_deref(), host.as_deref());
            let base = name.clone();
            let mut n = 2;
            while !names.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            out.push(Atom {
                name,
                pattern: pattern.clone(),
                methods: methods.clone(),
                host,
            });
        }
    }
    out
}

/// Representative request shapes for the workload (see the module docs).
pub fn shapes(rules: &[RuleSem], classes: &[Vec<String>]) -> Vec<Shape> {
    let ops: Vec<_> = rules
        .iter()
        .filter_map(|r| r.ops.as_ref())
        .flatten()
        .collect();
    let mut literal_lists: BTreeSet<Vec<String>> = BTreeSet::new();
    literal_lists.insert(Vec::new());
    let mut hosts: BTreeSet<String> = BTreeSet::new();
    for op in &ops {
        for p in op.paths.iter().chain(&op.not_paths) {
            let segs = p.segments();
            for k in 0..=segs.len() {
                literal_lists.insert(segs.get(..k).unwrap_or_default().to_vec());
            }
        }
        if let Some(names) = &op.hosts {
            hosts.extend(names.iter().cloned());
        }
    }
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for list in &literal_lists {
        paths.insert(super::sem::join(list));
        let mut below = list.clone();
        below.push(FRESH_SEGMENT.to_owned());
        paths.insert(super::sem::join(&below));
        if let Some(last) = list.last() {
            let mut near = list.clone();
            near.pop();
            near.push(format!("{last}x"));
            paths.insert(super::sem::join(&near));
            paths.insert(format!("{}?q=1", super::sem::join(list)));
        }
    }
    // Hosts matter only where an operation naming hosts can match: other
    // paths are checked with one authority.
    let host_scopes: Vec<Option<String>> = ops
        .iter()
        .filter(|op| op.hosts.is_some())
        .flat_map(|op| {
            if op.paths.is_empty() {
                vec![None]
            } else {
                op.paths
                    .iter()
                    .map(|p| p.segments().first().cloned())
                    .collect()
            }
        })
        .collect();
    let mut host_authorities: Vec<String> = Vec::new();
    for h in &hosts {
        host_authorities.push(h.clone());
        host_authorities.push(format!("{h}:8080"));
        host_authorities.push(h.to_ascii_uppercase());
    }
    // One method per class: a class is exactly the methods no operation
    // tells apart.
    let methods: Vec<String> = classes.iter().filter_map(|c| c.first().cloned()).collect();
    let mut out = Vec::new();
    for path in &paths {
        let first = path
            .trim_start_matches('/')
            .split(['/', '?'])
            .next()
            .unwrap_or_default();
        let scoped = host_scopes
            .iter()
            .any(|s| s.as_deref().is_none_or(|seg| first.starts_with(seg)));
        let mut authorities = vec![DEFAULT_AUTHORITY.to_owned()];
        if scoped {
            authorities.extend(host_authorities.iter().cloned());
        }
        for method in &methods {
            for authority in &authorities {
                out.push(Shape {
                    method: method.clone(),
                    authority: authority.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    out
}

/// Per intent: shapes inside the rule, all shapes, an inside and an
/// outside example.
type CoverStats = BTreeMap<Option<String>, (usize, usize, Option<Shape>, Option<Shape>)>;

/// How one rule relates to one intent over the representative shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// Every shape classified into the intent is in the rule's operations.
    Full,
    /// Some are, some are not.
    Partial,
    /// None are.
    None,
}

/// For a rule with operations: how it covers each intent (by name, plus
/// `None` for unclassified), given each shape's classification.
pub fn coverage(
    rule: &RuleSem,
    classified: &[(Shape, Option<String>)],
) -> BTreeMap<Option<String>, (Cover, Option<Shape>)> {
    let mut stats: CoverStats = BTreeMap::new();
    for (shape, intent) in classified {
        let entry = stats.entry(intent.clone()).or_insert((0, 0, None, None));
        entry.1 += 1;
        if rule.op_holds(&shape.method, &shape.authority, &shape.path) {
            entry.0 += 1;
            entry.2.get_or_insert_with(|| shape.clone());
        } else {
            entry.3.get_or_insert_with(|| shape.clone());
        }
    }
    stats
        .into_iter()
        .map(|(intent, (inside, total, in_example, out_example))| {
            let cover = if inside == 0 {
                (Cover::None, None)
            } else if inside == total {
                (Cover::Full, in_example)
            } else {
                (Cover::Partial, in_example.or(out_example))
            };
            (intent, cover)
        })
        .collect()
}

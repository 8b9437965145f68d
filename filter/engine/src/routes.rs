//! Intent classification: a segment trie built once from every intent's path
//! templates, walked per request without allocation.
//!
//! Precedence is by specificity, segment by segment from the left: a literal
//! segment beats `{param}`, which beats `**`. The compiler rejects two intents
//! whose templates have the same shape and overlapping methods and hosts, so
//! the most specific match is also the only one.

use std::collections::hash_map::Entry as MapEntry;

use crate::model::{IntentIdx, Segment, StrId};
use crate::path::SegmentEnds;
use crate::policy::FxMap;
use crate::spiffe::{eq_bytes, text_hash};

/// An intent waiting at a trie node.
#[derive(Debug, Clone)]
struct Entry {
    intent: IntentIdx,
    /// Method bits; 0 = any.
    methods: u16,
    /// Lowercase host without port; `None` = any.
    host: Option<Box<str>>,
}

impl Entry {
    #[inline]
    fn accepts(&self, method_bit: u16, host: &str) -> bool {
        (self.methods == 0 || self.methods & method_bit != 0)
            && self.host.as_deref().is_none_or(|h| {
                // `h` is lowercase; most requests spell the host that way too.
                eq_bytes(h.as_bytes(), host.as_bytes()) || h.eq_ignore_ascii_case(host)
            })
    }
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    /// Number of literal children (found through `Router::edges`).
    literals: u32,
    /// `{param}` child, or `NONE`.
    param: u32,
    /// Intents whose template ends exactly here: `entries[exact.0..exact.1]`.
    exact: (u32, u32),
    /// Intents whose template ends here with `**`.
    rest: (u32, u32),
}

/// One literal edge in the open-addressed edge table.
#[derive(Debug, Clone, Copy)]
struct Edge {
    /// `edge_key(parent, text_hash(label))`.
    key: u64,
    parent: u32,
    /// `NONE` = empty slot.
    child: u32,
    /// The literal: `labels[label.0..label.0 + label.1]`.
    label: (u32, u32),
}

/// The compiled route index: trie nodes, the intents waiting at them, and
/// one hash table of every literal edge keyed by (parent node, segment), so a
/// node with thousands of literal children costs the same as one with two.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    nodes: Vec<Node>,
    entries: Vec<Entry>,
    edges: Vec<Edge>,
    /// `edges.len() - 1` (a power of two minus one).
    mask: usize,
    /// Every edge's literal, back to back (close together in memory).
    labels: String,
}

/// One template to insert: resolved literal strings, method bits, host.
pub(crate) struct Template<'a> {
    pub intent: IntentIdx,
    pub segments: &'a [Segment],
    pub methods: u16,
    pub host: Option<&'a str>,
}

#[inline]
fn edge_key(parent: u32, segment_hash: u64) -> u64 {
    let k = (segment_hash ^ u64::from(parent).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_mul(0xbf58_476d_1ce4_e5b9);
    k ^ (k >> 31)
}

/// The segments of a request path, as the walk reads them.
pub(crate) trait Segs {
    fn count(&self) -> usize;
    fn segment(&self, i: usize) -> &str;
}

impl Segs for [&str] {
    fn count(&self) -> usize {
        self.len()
    }
    fn segment(&self, i: usize) -> &str {
        self.get(i).copied().unwrap_or("")
    }
}

/// A validated path after its leading `/` and its segment end offsets (from
/// [`crate::path::split_canonical`]).
pub(crate) struct SplitPath<'a> {
    pub rest: &'a str,
    pub ends: &'a SegmentEnds,
    pub count: usize,
}

impl Segs for SplitPath<'_> {
    #[inline]
    fn count(&self) -> usize {
        self.count
    }
    #[inline]
    fn segment(&self, i: usize) -> &str {
        let start = match i.checked_sub(1) {
            Some(prev) => self.ends.get(prev).map_or(0, |e| usize::from(*e) + 1),
            None => 0,
        };
        let end = self.ends.get(i).map_or(0, |e| usize::from(*e));
        self.rest.get(start..end).unwrap_or("")
    }
}

/// The trie while it is built (literal children in insertion order; found
/// through one map keyed by (parent, literal), so a node with many children
/// costs no more to extend than one with few).
#[derive(Default)]
struct BuildNode<'a> {
    literals: Vec<(&'a str, usize)>,
    param: Option<usize>,
    exact: Vec<Entry>,
    rest: Vec<Entry>,
}

impl Router {
    /// Builds the trie. `resolve` maps a literal's `StrId` to its text; the
    /// caller has checked every id and that `Rest` is only last.
    pub(crate) fn build<'a>(
        templates: impl IntoIterator<Item = Template<'a>>,
        resolve: impl Fn(StrId) -> &'a str,
    ) -> Router {
        let mut nodes = vec![BuildNode::default()];
        let mut children: FxMap<(usize, &'a str), usize> = FxMap::default();
        for t in templates {
            let mut at = 0usize;
            let entry = Entry {
                intent: t.intent,
                methods: t.methods,
                host: t.host.map(|h| h.to_ascii_lowercase().into_boxed_str()),
            };
            let mut ends_in_rest = false;
            for seg in t.segments {
                let next_len = nodes.len();
                let Some(node) = nodes.get_mut(at) else { break };
                at = match seg {
                    Segment::Literal(id) => {
                        let text = resolve(*id);
                        match children.entry((at, text)) {
                            MapEntry::Occupied(child) => *child.get(),
                            MapEntry::Vacant(slot) => {
                                slot.insert(next_len);
                                node.literals.push((text, next_len));
                                nodes.push(BuildNode::default());
                                next_len
                            }
                        }
                    }
                    Segment::Param => match node.param {
                        Some(n) => n,
                        None => {
                            node.param = Some(next_len);
                            nodes.push(BuildNode::default());
                            next_len
                        }
                    },
                    Segment::Rest => {
                        ends_in_rest = true;
                        break;
                    }
                };
            }
            if let Some(node) = nodes.get_mut(at) {
                if ends_in_rest {
                    node.rest.push(entry);
                } else {
                    node.exact.push(entry);
                }
            }
        }

        drop(children);
        let edge_count: usize = nodes.iter().map(|n| n.literals.len()).sum();
        let slots = (edge_count * 2).next_power_of_two().max(8);
        let mask = slots - 1;
        let mut edges = vec![
            Edge {
                key: 0,
                parent: NONE,
                child: NONE,
                label: (0, 0),
            };
            slots
        ];
        let mut labels = String::new();
        let mut entries = Vec::new();
        let mut flat = Vec::with_capacity(nodes.len());
        for (parent, node) in nodes.into_iter().enumerate() {
            for (text, child) in &node.literals {
                let key = edge_key(parent as u32, text_hash(text.as_bytes()));
                let mut i = (key >> 32) as usize & mask;
                while edges.get(i).is_some_and(|e| e.child != NONE) {
                    i = (i + 1) & mask;
                }
                if let Some(slot) = edges.get_mut(i) {
                    *slot = Edge {
                        key,
                        parent: parent as u32,
                        child: *child as u32,
                        label: (labels.len() as u32, text.len() as u32),
                    };
                }
                labels.push_str(text);
            }
            let mut range = |list: Vec<Entry>| {
                let start = entries.len() as u32;
                entries.extend(list);
                (start, entries.len() as u32)
            };
            let exact = range(node.exact);
            let rest = range(node.rest);
            flat.push(Node {
                literals: node.literals.len() as u32,
                param: node.param.map_or(NONE, |p| p as u32),
                exact,
                rest,
            });
        }
        Router {
            nodes: flat,
            entries,
            edges,
            mask,
            labels,
        }
    }

    /// The literal child of `parent` for `segment`, if any.
    #[inline]
    fn literal_child(&self, parent: u32, segment: &str) -> Option<u32> {
        let key = edge_key(parent, text_hash(segment.as_bytes()));
        let mut i = (key >> 32) as usize & self.mask;
        // The table is at most half full, so an empty slot ends every probe.
        for _ in 0..self.edges.len() {
            let e = self.edges.get(i)?;
            if e.child == NONE {
                return None;
            }
            let (start, len) = (e.label.0 as usize, e.label.1 as usize);
            if e.key == key
                && e.parent == parent
                && self
                    .labels
                    .as_bytes()
                    .get(start..start + len)
                    .is_some_and(|label| eq_bytes(label, segment.as_bytes()))
            {
                return Some(e.child);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// The intent of a request given as segments (tests).
    #[cfg(test)]
    pub(crate) fn classify(
        &self,
        segments: &[&str],
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        self.walk(0, segments, 0, method_bit, host)
    }

    /// The intent of a request, if any, from the output of
    /// `path::split_canonical`. `host` is the canonical host
    /// ([`crate::authority::CanonicalAuthority::host`]).
    #[inline]
    pub(crate) fn classify_split(
        &self,
        path: &SplitPath<'_>,
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        self.walk(0, path, 0, method_bit, host)
    }

    #[inline]
    fn first_match(&self, range: (u32, u32), method_bit: u16, host: &str) -> Option<IntentIdx> {
        self.entries
            .get(range.0 as usize..range.1 as usize)?
            .iter()
            .find(|e| e.accepts(method_bit, host))
            .map(|e| e.intent)
    }

    // Precedence: the literal child, then the `{param}` child, then this
    // node's `**` intents. The walk loops while a node leaves nothing to fall
    // back to and recurses only where it does; depth is bounded by the number
    // of path segments (at most `path::MAX_SEGMENTS`).
    fn walk<S: Segs + ?Sized>(
        &self,
        mut at: u32,
        segs: &S,
        mut i: usize,
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        loop {
            let node = self.nodes.get(at as usize)?;
            if i >= segs.count() {
                return self
                    .first_match(node.exact, method_bit, host)
                    .or_else(|| self.first_match(node.rest, method_bit, host));
            }
            let literal = if node.literals > 0 {
                self.literal_child(at, segs.segment(i))
            } else {
                None
            };
            let next = match (literal, node.param != NONE) {
                (Some(child), false) => child,
                (None, true) => node.param,
                (None, false) => return self.first_match(node.rest, method_bit, host),
                (Some(child), true) => {
                    if let Some(found) = self.walk(child, segs, i + 1, method_bit, host) {
                        return Some(found);
                    }
                    node.param
                }
            };
            if node.rest.0 != node.rest.1 {
                return self
                    .walk(next, segs, i + 1, method_bit, host)
                    .or_else(|| self.first_match(node.rest, method_bit, host));
            }
            at = next;
            i += 1;
        }
    }

    /// Number of trie nodes (for size reports).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Method;

    fn router(
        templates: &[(u32, &[Segment], u16, Option<&str>)],
        strings: &[&'static str],
    ) -> Router {
        Router::build(
            templates.iter().map(|(i, s, m, h)| Template {
                intent: IntentIdx(*i),
                segments: s,
                methods: *m,
                host: *h,
            }),
            |id| strings.get(id.index()).copied().unwrap_or(""),
        )
    }

    #[test]
    fn most_specific_wins_with_backtracking() {
        use Segment::*;
        let strings = ["orders", "export", "static"];
        let r = router(
            &[
                (0, &[Literal(StrId(0)), Param], 0, None),
                (1, &[Literal(StrId(0)), Literal(StrId(1))], 0, None),
                (2, &[Literal(StrId(2)), Rest], 0, None),
                (3, &[Rest], Method::Get.bit(), None),
                (
                    4,
                    &[Literal(StrId(0)), Literal(StrId(1)), Literal(StrId(1))],
                    0,
                    None,
                ),
            ],
            &strings,
        );
        let get = Method::Get.bit();
        assert_eq!(r.classify(&["orders", "42"], get, "x"), Some(IntentIdx(0)));
        assert_eq!(
            r.classify(&["orders", "export"], get, "x"),
            Some(IntentIdx(1))
        );
        assert_eq!(r.classify(&["static"], get, "x"), Some(IntentIdx(2)));
        assert_eq!(
            r.classify(&["static", "a", "b"], get, "x"),
            Some(IntentIdx(2))
        );
        // `/orders/export/x` fails under the literal branch, then the param
        // branch, and falls back to the root `**` for GET only.
        assert_eq!(
            r.classify(&["orders", "export", "x"], get, "x"),
            Some(IntentIdx(3))
        );
        assert_eq!(
            r.classify(&["orders", "export", "x"], Method::Post.bit(), "x"),
            None
        );
        assert_eq!(
            r.classify(&["orders", "export", "export"], get, "x"),
            Some(IntentIdx(4))
        );
    }

    #[test]
    fn methods_and_hosts_filter() {
        use Segment::*;
        let strings = ["orders"];
        let r = router(
            &[
                (
                    0,
                    &[Literal(StrId(0))],
                    Method::Get.bit() | Method::Head.bit(),
                    Some("orders.svc"),
                ),
                (1, &[Literal(StrId(0))], Method::Post.bit(), None),
            ],
            &strings,
        );
        assert_eq!(
            r.classify(&["orders"], Method::Get.bit(), "ORDERS.svc"),
            Some(IntentIdx(0))
        );
        assert_eq!(r.classify(&["orders"], Method::Get.bit(), "other"), None);
        assert_eq!(
            r.classify(&["orders"], Method::Post.bit(), "other"),
            Some(IntentIdx(1))
        );
        assert_eq!(
            r.classify(&["orders"], Method::Delete.bit(), "orders.svc"),
            None
        );
        assert_eq!(r.classify(&[], Method::Get.bit(), "orders.svc"), None);
    }
}

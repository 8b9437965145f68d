//! Intent classification: a segment trie built once from every intent's path
//! templates, walked per request without allocation.
//!
//! Precedence is by specificity, segment by segment from the left: a literal
//! segment beats `{param}`, which beats `**`. The compiler rejects two intents
//! whose templates have the same shape and overlapping methods and hosts, so
//! the most specific match is also the only one.

use crate::model::{IntentIdx, Segment};

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
    fn accepts(&self, method_bit: u16, host: &str) -> bool {
        (self.methods == 0 || self.methods & method_bit != 0)
            && self
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host))
    }
}

#[derive(Debug, Default, Clone)]
struct Node {
    /// Literal children, sorted by segment for binary search.
    literals: Vec<(Box<str>, usize)>,
    /// For wide nodes (a root with thousands of services): literal -> child.
    index: Option<crate::policy::FxMap<Box<str>, usize>>,
    /// `{param}` child.
    param: Option<usize>,
    /// Intents whose template ends exactly here.
    exact: Vec<Entry>,
    /// Intents whose template ends here with `**`.
    rest: Vec<Entry>,
}

/// The compiled route index.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    nodes: Vec<Node>,
}

/// One template to insert: resolved literal strings, method bits, host.
pub(crate) struct Template<'a> {
    pub intent: IntentIdx,
    pub segments: &'a [Segment],
    pub methods: u16,
    pub host: Option<&'a str>,
}

impl Router {
    /// Builds the trie. `resolve` maps a literal's `StrId` to its text; the
    /// caller has checked every id and that `Rest` is only last.
    pub(crate) fn build<'a>(
        templates: impl IntoIterator<Item = Template<'a>>,
        resolve: impl Fn(u32) -> &'a str,
    ) -> Router {
        let mut nodes = vec![Node::default()];
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
                        match node.literals.binary_search_by(|(s, _)| (**s).cmp(text)) {
                            Ok(i) => node.literals.get(i).map_or(0, |(_, n)| *n),
                            Err(i) => {
                                node.literals.insert(i, (text.into(), next_len));
                                nodes.push(Node::default());
                                next_len
                            }
                        }
                    }
                    Segment::Param => match node.param {
                        Some(n) => n,
                        None => {
                            node.param = Some(next_len);
                            nodes.push(Node::default());
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
        for node in &mut nodes {
            if node.literals.len() > 16 {
                node.index = Some(node.literals.iter().cloned().collect());
            }
        }
        Router { nodes }
    }

    /// The intent of a request given as segments (tests).
    #[cfg(test)]
    pub(crate) fn classify(
        &self,
        segments: &[&str],
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        self.walk_iter(0, segments.iter().copied(), method_bit, host)
    }

    /// The intent of a request, if any, from the output of
    /// `path::canonical_rest`. `host` is the authority without port.
    pub(crate) fn classify_rest(
        &self,
        rest: &str,
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        let mut segs = rest.split('/');
        if rest.is_empty() {
            segs.next();
        }
        self.walk_iter(0, segs, method_bit, host)
    }

    // Depth is bounded by the number of path segments (at most
    // `path::MAX_SEGMENTS`), and each trie node is visited at most once.
    fn walk_iter<'s, I: Iterator<Item = &'s str> + Clone>(
        &self,
        at: usize,
        segs: I,
        method_bit: u16,
        host: &str,
    ) -> Option<IntentIdx> {
        let node = self.nodes.get(at)?;
        let first_match = |entries: &[Entry]| {
            entries
                .iter()
                .find(|e| e.accepts(method_bit, host))
                .map(|e| e.intent)
        };
        let mut rest = segs;
        let Some(first) = rest.next() else {
            return first_match(&node.exact).or_else(|| first_match(&node.rest));
        };
        let child = match &node.index {
            Some(index) => index.get(first).copied(),
            None => node
                .literals
                .binary_search_by(|(s, _)| (**s).cmp(first))
                .ok()
                .and_then(|i| node.literals.get(i))
                .map(|(_, c)| *c),
        };
        let literal = child.and_then(|child| self.walk_iter(child, rest.clone(), method_bit, host));
        literal
            .or_else(|| {
                node.param
                    .and_then(|child| self.walk_iter(child, rest.clone(), method_bit, host))
            })
            .or_else(|| first_match(&node.rest))
    }

    /// Number of trie nodes (for size reports).
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

/// The host part of an `:authority` (drops `:port`, keeps `[v6]` brackets).
pub fn authority_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .and_then(|end| authority.get(..=end))
            .unwrap_or(authority);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
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
                intent: *i,
                segments: s,
                methods: *m,
                host: *h,
            }),
            |id| strings.get(id as usize).copied().unwrap_or(""),
        )
    }

    #[test]
    fn most_specific_wins_with_backtracking() {
        use Segment::*;
        let strings = ["orders", "export", "static"];
        let r = router(
            &[
                (0, &[Literal(0), Param], 0, None),
                (1, &[Literal(0), Literal(1)], 0, None),
                (2, &[Literal(2), Rest], 0, None),
                (3, &[Rest], Method::Get.bit(), None),
                (4, &[Literal(0), Literal(1), Literal(1)], 0, None),
            ],
            &strings,
        );
        let get = Method::Get.bit();
        assert_eq!(r.classify(&["orders", "42"], get, "x"), Some(0));
        assert_eq!(r.classify(&["orders", "export"], get, "x"), Some(1));
        assert_eq!(r.classify(&["static"], get, "x"), Some(2));
        assert_eq!(r.classify(&["static", "a", "b"], get, "x"), Some(2));
        // `/orders/export/x` fails under the literal branch, then the param
        // branch, and falls back to the root `**` for GET only.
        assert_eq!(r.classify(&["orders", "export", "x"], get, "x"), Some(3));
        assert_eq!(
            r.classify(&["orders", "export", "x"], Method::Post.bit(), "x"),
            None
        );
        assert_eq!(
            r.classify(&["orders", "export", "export"], get, "x"),
            Some(4)
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
                    &[Literal(0)],
                    Method::Get.bit() | Method::Head.bit(),
                    Some("orders.svc"),
                ),
                (1, &[Literal(0)], Method::Post.bit(), None),
            ],
            &strings,
        );
        assert_eq!(
            r.classify(&["orders"], Method::Get.bit(), "ORDERS.svc"),
            Some(0)
        );
        assert_eq!(r.classify(&["orders"], Method::Get.bit(), "other"), None);
        assert_eq!(
            r.classify(&["orders"], Method::Post.bit(), "other"),
            Some(1)
        );
        assert_eq!(
            r.classify(&["orders"], Method::Delete.bit(), "orders.svc"),
            None
        );
        assert_eq!(r.classify(&[], Method::Get.bit(), "orders.svc"), None);
    }

    #[test]
    fn authority_host_strips_port() {
        assert_eq!(authority_host("orders.svc:8443"), "orders.svc");
        assert_eq!(authority_host("orders.svc"), "orders.svc");
        assert_eq!(authority_host("[::1]:80"), "[::1]");
        assert_eq!(authority_host("[::1]"), "[::1]");
    }
}

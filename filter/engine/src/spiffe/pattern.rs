//! SPIFFE ID patterns (`spiffe://prod.example/ns/*/sa/**`): the one matcher.
//!
//! The compiler (`meshward_policy::checked::IdPattern`, which `lower` uses to
//! drop subjects that another subject of the same rule covers) and the engine
//! (`Policy`'s subject index, conditions and chain forwarders) keep patterns in
//! their own shapes, interned or not, and both view them as a sequence of
//! [`Segment`]s and ask [`matches()`] or [`path_matches`]. A divergence between
//! what the compiler believes matches and what the filter enforces is then
//! impossible by construction.

use super::SpiffeId;

/// One path segment of a SPIFFE ID pattern, borrowing its literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Exactly this segment (a valid path segment: no `/`, not empty).
    Literal(&'a str),
    /// `*`: any one segment.
    Any,
    /// `**`: any remaining segments, possibly none. Matching stops at the
    /// first `Rest`; policies only ever have it last (the compiler's checker
    /// and the engine's loader both reject it elsewhere).
    Rest,
}

/// Whether `id` is in `trust_domain` and its path matches `pattern`.
pub fn matches<'a>(
    trust_domain: &str,
    pattern: impl IntoIterator<Item = Segment<'a>>,
    id: &SpiffeId,
) -> bool {
    id.trust_domain() == trust_domain && path_matches(pattern, id)
}

/// Whether the path of `id` matches `pattern`; the trust domain is the
/// caller's to compare (the engine compares interned ids).
pub fn path_matches<'a>(pattern: impl IntoIterator<Item = Segment<'a>>, id: &SpiffeId) -> bool {
    // Split as bytes: a byte split is cheaper than `str::split` on the
    // request path, and segments compare equal as bytes exactly when they
    // do as strings.
    let mut actual = id.path().as_bytes().split(|&b| b == b'/').skip(1);
    for segment in pattern {
        match segment {
            Segment::Rest => return true,
            Segment::Any => {
                if actual.next().is_none() {
                    return false;
                }
            }
            Segment::Literal(want) => {
                if actual.next() != Some(want.as_bytes()) {
                    return false;
                }
            }
        }
    }
    actual.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(text: &str) -> SpiffeId {
        SpiffeId::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn p(pattern: &[Segment<'_>], text: &str) -> bool {
        matches("d", pattern.iter().copied(), &id(text))
    }

    #[test]
    fn literal_any_and_rest() {
        use Segment::{Any, Literal, Rest};
        assert!(p(
            &[Literal("ns"), Any, Literal("sa"), Rest],
            "spiffe://d/ns/a/sa"
        ));
        assert!(p(
            &[Literal("ns"), Any, Literal("sa"), Rest],
            "spiffe://d/ns/a/sa/b/c"
        ));
        assert!(!p(
            &[Literal("ns"), Any, Literal("sa"), Rest],
            "spiffe://d/ns/a"
        ));
        assert!(!p(&[Literal("ns"), Any], "spiffe://e/ns/a"));
        assert!(!p(&[Literal("ns"), Any], "spiffe://d/ns/a/b"));
        assert!(!p(&[Literal("ns"), Any], "spiffe://d/ns"));
        assert!(p(&[Rest], "spiffe://d"));
        assert!(p(&[], "spiffe://d"));
        assert!(!p(&[], "spiffe://d/a"));
        // A literal is a whole segment, never a prefix.
        assert!(!p(&[Literal("ns")], "spiffe://d/nsx"));
        assert!(!p(&[Literal("nsx")], "spiffe://d/ns"));
    }

    // The three matchers this module replaced, kept verbatim (modulo names)
    // as the reference the property below holds the shared one to.

    /// The engine's indexed-pattern matcher (`policy.rs`), over path bytes.
    fn old_engine_index(segments: &[Segment<'_>], id: &SpiffeId) -> bool {
        let mut rest = id.path().as_bytes();
        for seg in segments {
            match seg {
                Segment::Rest => return true,
                Segment::Any => {
                    let Some(after) = rest.strip_prefix(b"/") else {
                        return false;
                    };
                    let end = after.iter().position(|b| *b == b'/').unwrap_or(after.len());
                    rest = after.get(end..).unwrap_or(&[]);
                }
                Segment::Literal(want) => {
                    let Some(after) = rest
                        .strip_prefix(b"/")
                        .and_then(|r| r.strip_prefix(want.as_bytes()))
                    else {
                        return false;
                    };
                    if !(after.is_empty() || after.first() == Some(&b'/')) {
                        return false;
                    }
                    rest = after;
                }
            }
        }
        rest.is_empty()
    }

    /// The engine's `Policy::subject_matches` and the compiler's
    /// `IdPattern::matches` (the same text in both places).
    fn old_segment_walk(td: &str, segments: &[Segment<'_>], id: &SpiffeId) -> bool {
        if id.trust_domain() != td {
            return false;
        }
        let mut actual = id.segments();
        for seg in segments {
            match seg {
                Segment::Rest => return true,
                Segment::Any => {
                    if actual.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(want) => {
                    if actual.next() != Some(*want) {
                        return false;
                    }
                }
            }
        }
        actual.next().is_none()
    }

    const WORDS: [&str; 4] = ["a", "b", "ab", "a.b"];

    fn segment() -> impl Strategy<Value = Segment<'static>> {
        prop_oneof![
            4 => (0..WORDS.len()).prop_map(|i| Segment::Literal(WORDS[i])),
            2 => Just(Segment::Any),
            1 => Just(Segment::Rest),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn agrees_with_the_matchers_it_replaced(
            pattern in prop::collection::vec(segment(), 0..5),
            rest_last_only in any::<bool>(),
            path in prop::collection::vec(0..WORDS.len(), 0..5),
            td in prop_oneof![Just("d"), Just("e")],
        ) {
            let mut pattern = pattern;
            if rest_last_only {
                // The shape policies are restricted to.
                let last = pattern.len().saturating_sub(1);
                pattern = pattern
                    .into_iter()
                    .enumerate()
                    .filter(|(i, s)| *i == last || *s != Segment::Rest)
                    .map(|(_, s)| s)
                    .collect();
            }
            let mut text = format!("spiffe://{td}");
            for w in &path {
                text.push('/');
                text.push_str(WORDS[*w]);
            }
            let id = id(&text);
            let shared = matches("d", pattern.iter().copied(), &id);
            prop_assert_eq!(shared, old_segment_walk("d", &pattern, &id));
            prop_assert_eq!(
                shared,
                id.trust_domain() == "d" && old_engine_index(&pattern, &id)
            );
            prop_assert_eq!(path_matches(pattern.iter().copied(), &id), old_engine_index(&pattern, &id));
        }
    }
}

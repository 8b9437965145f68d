//! Claim paths: how rules name a claim of a verified end-user token,
//! including one nested in JSON objects.
//!
//! A path is a sequence of object keys. Keys are separated by `.`; a key
//! that itself contains `.` (or `[` / `]`, or is to be read literally) is
//! written in brackets, with or without the dot before it:
//!
//! | written | keys read |
//! | --- | --- |
//! | `groups` | `groups` |
//! | `realm_access.roles` | `realm_access` → `roles` |
//! | `resource_access.shop.roles` | `resource_access` → `shop` → `roles` |
//! | `resource_access[shop.api].roles` | `resource_access` → `shop.api` → `roles` |
//! | `[https://shop.example/roles]` | `https://shop.example/roles` |
//!
//! A bracketed key ends at the first `]`, so a key containing `]` cannot be
//! named. Every path has one canonical text ([`ClaimPath::as_str`]): plain
//! keys joined by `.`, bracketed keys (only those that need it) written
//! `[key]` with no dot before them. The compiler writes canonical paths into
//! the policy and the plugin configuration, verified tokens and audit lines
//! key claims by it, so two spellings of one path always meet.
//!
//! Bounds: at most [`MAX_CLAIM_PATH_LEN`] bytes and
//! [`MAX_CLAIM_PATH_KEYS`] keys. Only objects are walked (a list or a scalar
//! on the way means the claim is absent), and the value found must be a
//! string or a list of strings for a rule to see it.

use serde_json::{Map, Value};

/// Longest claim path, in bytes.
pub const MAX_CLAIM_PATH_LEN: usize = 256;
/// Most keys in one claim path (nesting depth read from a token).
pub const MAX_CLAIM_PATH_KEYS: usize = 8;

/// Why a claim path is malformed. Positions are byte offsets into the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimPathError {
    /// The path is empty.
    #[error("a claim path may not be empty")]
    Empty,
    /// Longer than [`MAX_CLAIM_PATH_LEN`] bytes.
    #[error("a claim path is at most 256 bytes")]
    TooLong,
    /// More than [`MAX_CLAIM_PATH_KEYS`] keys.
    #[error("a claim path has at most 8 keys")]
    TooDeep,
    /// Two dots in a row, a dot at either end, or `[]`.
    #[error("empty key at byte {at}")]
    EmptyKey {
        /// Where the empty key is.
        at: usize,
    },
    /// A `[` with no `]` after it.
    #[error("`[` at byte {at} is never closed by `]`")]
    Unclosed {
        /// Where the `[` is.
        at: usize,
    },
    /// A `]` outside brackets, or a plain key right after `]` with no dot.
    #[error("unexpected `{found}` at byte {at}")]
    Unexpected {
        /// Where.
        at: usize,
        /// The character found.
        found: char,
    },
}

impl ClaimPathError {
    /// The byte range of the path text the problem is at.
    pub fn range(&self, text: &str) -> std::ops::Range<usize> {
        match *self {
            ClaimPathError::Empty | ClaimPathError::TooLong | ClaimPathError::TooDeep => {
                0..text.len()
            }
            ClaimPathError::EmptyKey { at }
            | ClaimPathError::Unclosed { at }
            | ClaimPathError::Unexpected { at, .. } => {
                let end = text
                    .get(at..)
                    .and_then(|r| r.chars().next())
                    .map_or(at, |c| at + c.len_utf8());
                at..end
            }
        }
    }
}

/// A parsed claim path: its canonical text and its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    keys: Vec<String>,
}

impl ClaimPath {
    /// Parses a path as written (see the module documentation).
    pub fn parse(text: &str) -> Result<ClaimPath, ClaimPathError> {
        if text.is_empty() {
            return Err(ClaimPathError::Empty);
        }
        if text.len() > MAX_CLAIM_PATH_LEN {
            return Err(ClaimPathError::TooLong);
        }
        let mut keys: Vec<String> = Vec::new();
        let mut pos = 0;
        loop {
            let rest = text.get(pos..).unwrap_or("");
            if let Some(inner) = rest.strip_prefix('[') {
                let close = inner
                    .find(']')
                    .ok_or(ClaimPathError::Unclosed { at: pos })?;
                let key = inner.get(..close).unwrap_or("");
                if key.is_empty() {
                    return Err(ClaimPathError::EmptyKey { at: pos });
                }
                keys.push(key.to_owned());
                pos += close + 2;
            } else {
                let end = rest.find(['.', '[', ']']).unwrap_or(rest.len());
                if rest.get(end..).is_some_and(|r| r.starts_with(']')) {
                    return Err(ClaimPathError::Unexpected {
                        at: pos + end,
                        found: ']',
                    });
                }
                if end == 0 {
                    return Err(ClaimPathError::EmptyKey { at: pos });
                }
                keys.push(rest.get(..end).unwrap_or("").to_owned());
                pos += end;
            }
            if keys.len() > MAX_CLAIM_PATH_KEYS {
                return Err(ClaimPathError::TooDeep);
            }
            let rest = text.get(pos..).unwrap_or("");
            match rest.chars().next() {
                None => break,
                // No dot is needed before a bracketed key.
                Some('[') => {}
                Some('.') => {
                    pos += 1;
                    if pos == text.len() {
                        return Err(ClaimPathError::EmptyKey { at: pos - 1 });
                    }
                }
                Some(found) => return Err(ClaimPathError::Unexpected { at: pos, found }),
            }
        }
        Ok(ClaimPath {
            text: canonical(&keys),
            keys,
        })
    }

    /// The canonical text (see the module documentation).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The keys, outermost first.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    /// The value at this path in a token's claims object, walking objects
    /// only; `None` when a key is missing or a non-object is in the way.
    pub fn lookup<'v>(&self, claims: &'v Map<String, Value>) -> Option<&'v Value> {
        let (first, rest) = self.keys.split_first()?;
        let mut value = claims.get(first)?;
        for key in rest {
            value = value.as_object()?.get(key)?;
        }
        Some(value)
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

fn canonical(keys: &[String]) -> String {
    let mut text = String::new();
    for key in keys {
        if key.contains(['.', '[', ']']) {
            text.push('[');
            text.push_str(key);
            text.push(']');
        } else {
            if !text.is_empty() {
                text.push('.');
            }
            text.push_str(key);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(text: &str) -> Vec<String> {
        ClaimPath::parse(text).unwrap().keys
    }

    fn canon(text: &str) -> String {
        ClaimPath::parse(text).unwrap().text
    }

    #[test]
    fn parses_plain_nested_and_bracketed_paths() {
        assert_eq!(keys("groups"), ["groups"]);
        assert_eq!(keys("realm_access.roles"), ["realm_access", "roles"]);
        assert_eq!(
            keys("resource_access[shop.api].roles"),
            ["resource_access", "shop.api", "roles"]
        );
        assert_eq!(
            keys("resource_access.[shop.api].roles"),
            ["resource_access", "shop.api", "roles"]
        );
        assert_eq!(
            keys("[https://shop.example/roles]"),
            ["https://shop.example/roles"]
        );
        assert_eq!(keys("[a][b]"), ["a", "b"]);
        assert_eq!(keys("[plain].x"), ["plain", "x"]);
    }

    #[test]
    fn canonical_text_is_unique() {
        assert_eq!(canon("realm_access.roles"), "realm_access.roles");
        assert_eq!(canon("a.[b.c].d"), "a[b.c].d");
        assert_eq!(canon("a[b.c].d"), "a[b.c].d");
        assert_eq!(canon("[plain].x"), "plain.x");
        assert_eq!(canon("[a][b]"), "a.b");
        assert_eq!(canon("[https://x.example/r]"), "[https://x.example/r]");
        // The canonical text parses to the same keys.
        for text in ["a[b.c].d", "[https://x.example/r]", "x[y].z[w.v]"] {
            let path = ClaimPath::parse(text).unwrap();
            assert_eq!(ClaimPath::parse(path.as_str()).unwrap(), path);
        }
    }

    #[test]
    fn rejects_malformed_paths() {
        let err = |text: &str| ClaimPath::parse(text).unwrap_err();
        assert_eq!(err(""), ClaimPathError::Empty);
        assert_eq!(err(".a"), ClaimPathError::EmptyKey { at: 0 });
        assert_eq!(err("a..b"), ClaimPathError::EmptyKey { at: 2 });
        assert_eq!(err("a."), ClaimPathError::EmptyKey { at: 1 });
        assert_eq!(err("a[]"), ClaimPathError::EmptyKey { at: 1 });
        assert_eq!(err("a[b"), ClaimPathError::Unclosed { at: 1 });
        assert_eq!(err("a]b"), ClaimPathError::Unexpected { at: 1, found: ']' });
        assert_eq!(
            err("[a]b"),
            ClaimPathError::Unexpected { at: 3, found: 'b' }
        );
        assert_eq!(
            err(&format!("{}a", "a.".repeat(8))),
            ClaimPathError::TooDeep
        );
        assert_eq!(err(&"a".repeat(257)), ClaimPathError::TooLong);
        assert!(ClaimPath::parse(&format!("{}a", "a.".repeat(7))).is_ok());
        assert_eq!(
            ClaimPathError::Unexpected { at: 3, found: 'b' }.range("[a]b"),
            3..4
        );
        assert_eq!(ClaimPathError::TooDeep.range("abc"), 0..3);
    }

    #[test]
    fn lookup_walks_objects_only() {
        let claims = json!({
            "realm_access": {"roles": ["admin", "user"]},
            "resource_access": {"shop.api": {"roles": ["buyer"]}},
            "https://shop.example/tier": "gold",
            "list": [{"roles": ["x"]}],
            "n": {"deep": 3}
        });
        let claims = claims.as_object().unwrap();
        let at = |text: &str| ClaimPath::parse(text).unwrap().lookup(claims).cloned();
        assert_eq!(at("realm_access.roles"), Some(json!(["admin", "user"])));
        assert_eq!(
            at("resource_access[shop.api].roles"),
            Some(json!(["buyer"]))
        );
        assert_eq!(at("[https://shop.example/tier]"), Some(json!("gold")));
        assert_eq!(at("n.deep"), Some(json!(3)));
        assert_eq!(at("list.roles"), None);
        assert_eq!(at("realm_access.roles.x"), None);
        assert_eq!(at("missing.x"), None);
    }

    proptest::proptest! {
        /// Any text parses or is refused (never a panic); what parses has a
        /// canonical text that parses to the same keys, within the bounds.
        #[test]
        fn parse_is_total_and_canonical(text in "[a-z.\\[\\]/:é]{0,40}") {
            if let Ok(path) = ClaimPath::parse(&text) {
                proptest::prop_assert!(path.keys().len() <= MAX_CLAIM_PATH_KEYS);
                proptest::prop_assert!(path.keys().iter().all(|k| !k.is_empty() && !k.contains(']')));
                let again = ClaimPath::parse(path.as_str()).unwrap();
                proptest::prop_assert_eq!(&again, &path);
            } else if let Err(e) = ClaimPath::parse(&text) {
                let range = e.range(&text);
                proptest::prop_assert!(range.start <= range.end && range.end <= text.len());
                proptest::prop_assert!(text.get(range).is_some());
            }
        }

        /// Keys made of anything but `]` survive canonical text.
        #[test]
        fn keys_round_trip(keys in proptest::collection::vec("[a-z./\\[:]{1,6}", 1..=8)) {
            let text = canonical(&keys);
            let path = ClaimPath::parse(&text).unwrap();
            proptest::prop_assert_eq!(path.keys(), keys.as_slice());
        }
    }
}

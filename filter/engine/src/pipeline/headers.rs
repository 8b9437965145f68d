//! The request's headers as the pipeline reads them: one host call, then
//! lookups without further host calls.

use crate::evaluate::Headers;

/// Headers the filter owns: incoming copies are removed before the app or
/// the next hop sees the request, and the filter writes its own.
pub const OWNED_PREFIX: &str = "x-meshward-";

/// The request headers in order, repeated names kept as separate entries
/// (Envoy keeps them apart, so duplicates stay visible).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList(Vec<(String, String)>);

impl HeaderList {
    /// Headers whose values are already text.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        HeaderList(pairs)
    }

    /// Headers as a host hands them over. A value that is not UTF-8 (HTTP/1
    /// obs-text bytes) is kept with U+FFFD in place of the invalid bytes: it
    /// can never equal a policy's literal, as the raw bytes could not either.
    pub fn from_bytes(pairs: Vec<(String, Vec<u8>)>) -> Self {
        HeaderList(
            pairs
                .into_iter()
                .map(|(name, value)| {
                    let value = String::from_utf8(value)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    (name, value)
                })
                .collect(),
        )
    }

    /// The (name, value) pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The value, or `""`.
    pub fn get_or_empty(&self, name: &str) -> &str {
        Headers::get(self, name).unwrap_or("")
    }

    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// `None` when the header is absent; its value, or `duplicate` when it
    /// is repeated.
    pub fn single<E: Copy>(&self, name: &str, duplicate: E) -> Option<Result<&str, E>> {
        match self.all(name).as_slice() {
            [] => None,
            [one] => Some(Ok(*one)),
            _ => Some(Err(duplicate)),
        }
    }

    /// The distinct names of incoming headers the filter owns.
    pub fn owned_names(&self) -> Vec<String> {
        let mut owned: Vec<String> = self
            .0
            .iter()
            .map(|(k, _)| k.to_ascii_lowercase())
            .filter(|k| k.starts_with(OWNED_PREFIX))
            .collect();
        owned.sort_unstable();
        owned.dedup();
        owned
    }
}

/// Delegates to the engine's implementation for header lists (one pass for
/// the condition headers, ASCII-case-insensitive names).
impl Headers for HeaderList {
    fn get(&self, name: &str) -> Option<&str> {
        Headers::get(&self.0, name)
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.0.is_repeated(name)
    }

    fn read_all<'s>(&'s self, names: &[String], values: &mut [Option<&'s str>]) -> bool {
        self.0.read_all(names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_repeats_and_non_utf8_values() {
        let headers = HeaderList::from_bytes(vec![
            ("x-a".into(), b"1".to_vec()),
            ("X-A".into(), b"2".to_vec()),
            ("x-note".into(), b"caf\xe9".to_vec()),
            ("x-meshward-peer".into(), b"forged".to_vec()),
        ]);
        assert_eq!(headers.all("x-a"), ["1", "2"]);
        assert!(headers.single("x-a", ()).unwrap().is_err());
        assert_eq!(headers.single("x-note", ()).unwrap(), Ok("caf\u{fffd}"));
        assert!(headers.single("x-none", ()).is_none());
        assert_eq!(headers.owned_names(), ["x-meshward-peer"]);
    }
}

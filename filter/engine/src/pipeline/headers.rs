//! The request's headers as the pipeline reads them: one host call, then
//! lookups without further host calls.

use crate::evaluate::Headers;

/// Headers the filter owns: incoming copies are removed before the app or
/// the next hop sees the request, and the filter writes its own.
pub const OWNED_PREFIX: &str = "x-meshward-";

/// The request headers in order, repeated names kept as separate entries
/// (Envoy keeps them apart, so duplicates stay visible).
///
/// Every name and value lives in one string; an entry is three offsets into
/// it. A host that hands over its serialized header map
/// ([`HeaderList::from_map_bytes`]) is read in place: two allocations per
/// request instead of two per header.
#[derive(Debug, Clone, Default)]
pub struct HeaderList {
    text: String,
    /// `[name start, name end, value start, value end]` in `text`.
    entries: Vec<[u32; 4]>,
}

/// Equal when the same pairs come in the same order (however stored).
impl PartialEq for HeaderList {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderList {}

impl HeaderList {
    /// Headers whose values are already text.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut list = HeaderList::with_capacity(
            pairs.len(),
            pairs.iter().map(|(n, v)| n.len() + v.len()).sum(),
        );
        for (name, value) in &pairs {
            list.push(name, value);
        }
        list
    }

    /// Headers as a host hands them over. A value that is not UTF-8 (HTTP/1
    /// obs-text bytes) is kept with U+FFFD in place of the invalid bytes: it
    /// can never equal a policy's literal, as the raw bytes could not either.
    pub fn from_bytes(pairs: Vec<(String, Vec<u8>)>) -> Self {
        let mut list = HeaderList::with_capacity(
            pairs.len(),
            pairs.iter().map(|(n, v)| n.len() + v.len()).sum(),
        );
        for (name, value) in &pairs {
            match core::str::from_utf8(value) {
                Ok(value) => list.push(name, value),
                Err(_) => list.push(name, &String::from_utf8_lossy(value)),
            }
        }
        list
    }

    /// Headers in the proxy-wasm map encoding (a little-endian `u32` pair
    /// count, each name's and value's `u32` length, then each name and value
    /// followed by a NUL), read in place. Names and values mean the same as
    /// in [`HeaderList::from_bytes`] (non-UTF-8 bytes become U+FFFD); `None`
    /// when the encoding is broken.
    pub fn from_map_bytes(mut bytes: Vec<u8>) -> Option<Self> {
        if bytes.is_empty() {
            return Some(HeaderList::default());
        }
        let word = |at: usize| -> Option<usize> {
            let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(b)).ok()
        };
        let count = word(0)?;
        let data = count.checked_mul(8)?.checked_add(4)?;
        if data > bytes.len() {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        // Offsets relative to `data`, where the text starts.
        let mut at = 0usize;
        for i in 0..count {
            let name_len = word(4 + 8 * i)?;
            let value_len = word(8 + 8 * i)?;
            let name_end = at.checked_add(name_len)?;
            // The NUL after the name.
            let value_start = name_end.checked_add(1)?;
            let value_end = value_start.checked_add(value_len)?;
            let next = value_end.checked_add(1)?;
            if next > bytes.len() - data {
                return None;
            }
            entries.push((at, name_end, value_start, value_end));
            at = next;
        }
        bytes.drain(..data);
        match String::from_utf8(bytes) {
            // Names and values stay where they are; the separating NULs
            // are never part of an entry.
            Ok(text) => {
                let mut list = HeaderList {
                    text,
                    entries: Vec::with_capacity(count),
                };
                for (a, b, c, d) in entries {
                    let offset = |n: usize| u32::try_from(n).ok();
                    list.entries
                        .push([offset(a)?, offset(b)?, offset(c)?, offset(d)?]);
                }
                Some(list)
            }
            // Obs-text somewhere: rebuild with U+FFFD, as `from_bytes` does.
            Err(err) => {
                let bytes = err.into_bytes();
                let mut list = HeaderList::with_capacity(count, bytes.len());
                for (a, b, c, d) in entries {
                    list.push(
                        &String::from_utf8_lossy(bytes.get(a..b)?),
                        &String::from_utf8_lossy(bytes.get(c..d)?),
                    );
                }
                Some(list)
            }
        }
    }

    /// An empty list with room for `count` entries of `bytes` in all.
    pub fn with_capacity(count: usize, bytes: usize) -> Self {
        HeaderList {
            text: String::with_capacity(bytes),
            entries: Vec::with_capacity(count),
        }
    }

    /// Appends one header as a host lends it, without an intermediate copy;
    /// bytes that are not UTF-8 become U+FFFD, as in
    /// [`HeaderList::from_bytes`].
    pub fn push_bytes(&mut self, name: &[u8], value: &[u8]) {
        match (core::str::from_utf8(name), core::str::from_utf8(value)) {
            (Ok(name), Ok(value)) => self.push(name, value),
            _ => self.push(
                &String::from_utf8_lossy(name),
                &String::from_utf8_lossy(value),
            ),
        }
    }

    fn push(&mut self, name: &str, value: &str) {
        let start = self.text.len();
        self.text.push_str(name);
        let mid = self.text.len();
        self.text.push_str(value);
        let end = self.text.len();
        // Offsets past u32 would need a 4 GiB header block; hosts cap
        // headers at tens of KiB. Such an entry is left out.
        if let (Ok(a), Ok(b), Ok(c)) =
            (u32::try_from(start), u32::try_from(mid), u32::try_from(end))
        {
            self.entries.push([a, b, b, c]);
        }
    }

    /// The (name, value) pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|&[a, b, c, d]| {
            (
                self.text.get(a as usize..b as usize).unwrap_or_default(),
                self.text.get(c as usize..d as usize).unwrap_or_default(),
            )
        })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without headers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value, or `""`.
    pub fn get_or_empty(&self, name: &str) -> &str {
        Headers::get(self, name).unwrap_or("")
    }

    /// Every value of a header, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.values(name).collect()
    }

    fn values<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s str> + use<'s, 'n> {
        // Names are compared by length first, and a value is sliced only
        // for a matching name.
        self.entries.iter().filter_map(move |&[a, b, c, d]| {
            let (a, b) = (a as usize, b as usize);
            if b.checked_sub(a) != Some(name.len()) {
                return None;
            }
            // Bytes: no char-boundary checks for every name compared.
            let k = self.text.as_bytes().get(a..b)?;
            k.eq_ignore_ascii_case(name.as_bytes())
                .then(|| self.text.get(c as usize..d as usize))
                .flatten()
        })
    }

    /// `None` when the header is absent; its value, or `duplicate` when it
    /// is repeated.
    pub fn single<E: Copy>(&self, name: &str, duplicate: E) -> Option<Result<&str, E>> {
        let mut values = self.values(name);
        let first = values.next()?;
        Some(match values.next() {
            None => Ok(first),
            Some(_) => Err(duplicate),
        })
    }

    /// Whether the header is present at all.
    pub fn contains(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }

    /// The distinct names of incoming headers the filter owns.
    pub fn owned_names(&self) -> Vec<String> {
        let owns = |k: &str| {
            k.as_bytes()
                .get(..OWNED_PREFIX.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(OWNED_PREFIX.as_bytes()))
        };
        let mut owned: Vec<String> = self
            .iter()
            .filter(|(k, _)| owns(k))
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect();
        owned.sort_unstable();
        owned.dedup();
        owned
    }
}

/// ASCII-case-insensitive names; one pass for the condition headers.
impl Headers for HeaderList {
    fn get(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }

    fn is_repeated(&self, name: &str) -> bool {
        self.values(name).nth(1).is_some()
    }

    fn read_all<'s>(&'s self, names: &[String], values: &mut [Option<&'s str>]) -> bool {
        crate::evaluate::read_all_pairs(self.iter(), names, values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy-wasm map encoding of `pairs`.
    fn encode(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (n, v) in pairs {
            out.extend_from_slice(&(n.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (n, v) in pairs {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    #[test]
    fn keeps_repeats_and_non_utf8_values() {
        let pairs: Vec<(&str, &[u8])> = vec![
            ("x-a", b"1"),
            ("X-A", b"2"),
            ("x-note", b"caf\xe9"),
            ("x-meshward-peer", b"forged"),
            ("x-empty", b""),
        ];
        let owned: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .collect();
        let headers = HeaderList::from_bytes(owned);
        assert_eq!(
            HeaderList::from_map_bytes(encode(&pairs)),
            Some(headers.clone())
        );
        assert_eq!(headers.all("x-a"), ["1", "2"]);
        assert!(headers.single("x-a", ()).unwrap().is_err());
        assert_eq!(headers.single("x-note", ()).unwrap(), Ok("caf\u{fffd}"));
        assert_eq!(headers.single("x-empty", ()).unwrap(), Ok(""));
        assert!(headers.single("x-none", ()).is_none());
        assert_eq!(headers.owned_names(), ["x-meshward-peer"]);
        assert_eq!(headers.len(), 5);
    }

    #[test]
    fn map_bytes_are_read_in_place() {
        let pairs: Vec<(&str, &[u8])> = vec![(":path", b"/a"), ("x-b", b"v\"\\")];
        let headers = HeaderList::from_map_bytes(encode(&pairs)).unwrap();
        assert_eq!(
            headers.iter().collect::<Vec<_>>(),
            [(":path", "/a"), ("x-b", "v\"\\")]
        );
        assert_eq!(
            headers,
            HeaderList::new(vec![
                (":path".into(), "/a".into()),
                ("x-b".into(), "v\"\\".into())
            ])
        );
        assert_eq!(
            HeaderList::from_map_bytes(Vec::new()),
            Some(HeaderList::default())
        );
    }

    #[test]
    fn broken_map_bytes_are_refused() {
        let good = encode(&[("a", b"b")]);
        for cut in 1..good.len() {
            assert_eq!(
                HeaderList::from_map_bytes(good[..cut].to_vec()),
                None,
                "{cut}"
            );
        }
        let mut huge = good.clone();
        huge[4] = 0xff;
        assert_eq!(HeaderList::from_map_bytes(huge), None);
    }
}

//! The verified-token cache: what signature verification concluded about a
//! token, keyed by SHA-256 of the token's bytes, so a repeated token does not
//! pay for the signature again (ES256 costs milliseconds inside V8).
//!
//! Only successes are stored, and only what follows from the token's bytes
//! (its parsed claims and which key verified it). Everything that moves —
//! the clock, audiences, trusted domains, key rotation and staleness,
//! revocation — is checked again on every hit by the verifier. An entry is
//! dropped once its token is past `exp` (plus skew); a full cache drops its
//! oldest entry. Lookups hash on the stack and allocate nothing.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest as _, Sha256};

/// A sensible capacity: one entry per distinct live token (each a few hundred
/// bytes to a few KiB).
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 1024;

/// The cache key: SHA-256 of the token text (scheme stripped).
pub type TokenKey = [u8; 32];

/// Hashes a token into its cache key.
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Counters for tests, benchmarks and the filter's stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries inserted.
    pub inserts: u64,
    /// Entries dropped to stay within capacity.
    pub evictions: u64,
    /// Entries dropped because their token expired.
    pub expirations: u64,
}

#[derive(Debug)]
struct Entry<T> {
    value: T,
    /// Unix seconds from which the token can never verify again.
    expires_at: u64,
    seq: u64,
}

/// A bounded map from token hash to verified claims `T`.
#[derive(Debug)]
pub struct TokenCache<T> {
    map: HashMap<TokenKey, Entry<T>>,
    // INVARIANT: every live entry has exactly one record `(key, seq)` here with
    // its own `seq`; records of removed entries are skipped and compacted away.
    order: VecDeque<(TokenKey, u64)>,
    capacity: usize,
    next_seq: u64,
    stats: TokenCacheStats,
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        TokenCache::new(DEFAULT_TOKEN_CACHE_CAPACITY)
    }
}

impl<T> TokenCache<T> {
    /// A cache of at most `capacity` tokens (0 is taken as 1: the verified
    /// claims are lent out of the cache).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            stats: TokenCacheStats::default(),
        }
    }

    /// Looks a token up at `now_secs`, counting a hit or a miss. An expired
    /// entry is removed and counts as a miss.
    pub fn lookup(&mut self, key: &TokenKey, now_secs: u64) -> bool {
        match self.map.get(key) {
            Some(entry) if now_secs < entry.expires_at => {
                self.stats.hits += 1;
                true
            }
            Some(_) => {
                self.map.remove(key);
                self.stats.expirations += 1;
                self.stats.misses += 1;
                false
            }
            None => {
                self.stats.misses += 1;
                false
            }
        }
    }

    /// The entry for `key`, without counting (after [`TokenCache::lookup`]).
    pub fn peek(&self, key: &TokenKey) -> Option<&T> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Stores verified claims until `expires_at` (Unix seconds: the first
    /// second at which the token is expired) and returns them. A present key
    /// is replaced.
    pub fn insert(&mut self, key: TokenKey, value: T, expires_at: u64) -> &T {
        if self.map.remove(&key).is_none() {
            while self.map.len() >= self.capacity {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.order.push_back((key, seq));
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, s)| *s == seq || map.get(k).is_some_and(|e| e.seq == *s));
        }
        self.stats.inserts += 1;
        &self
            .map
            .entry(key)
            .insert_entry(Entry {
                value,
                expires_at,
                seq,
            })
            .into_mut()
            .value
    }

    /// Removes the oldest live entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.map.get(&key).is_some_and(|e| e.seq == seq) {
                self.map.remove(&key);
                self.stats.evictions += 1;
                return true;
            }
        }
        false
    }

    /// Tokens currently held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The bound given to [`TokenCache::new`] (at least 1).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The counters.
    pub fn stats(&self) -> TokenCacheStats {
        self.stats
    }

    /// Drops every entry (counters stay): on a configuration change.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(n: u8) -> TokenKey {
        token_key(&n.to_string())
    }

    #[test]
    fn hit_miss_and_expiry() {
        let mut c = TokenCache::new(4);
        assert!(!c.lookup(&k(1), 100));
        assert_eq!(*c.insert(k(1), "a", 200), "a");
        assert!(c.lookup(&k(1), 150));
        assert_eq!(c.peek(&k(1)), Some(&"a"));
        assert!(c.lookup(&k(1), 199));
        // At `expires_at`: removed, a miss.
        assert!(!c.lookup(&k(1), 200));
        assert!(c.is_empty());
        assert_eq!(
            c.stats(),
            TokenCacheStats {
                hits: 2,
                misses: 2,
                inserts: 1,
                evictions: 0,
                expirations: 1
            }
        );
    }

    #[test]
    fn bounded_fifo() {
        let mut c = TokenCache::new(2);
        c.insert(k(1), 1, u64::MAX);
        c.insert(k(2), 2, u64::MAX);
        c.insert(k(3), 3, u64::MAX);
        assert_eq!(c.len(), 2);
        assert_eq!(c.peek(&k(1)), None);
        assert_eq!(c.stats().evictions, 1);
        // Replacing a present key evicts nothing.
        c.insert(k(3), 33, u64::MAX);
        assert_eq!(c.peek(&k(3)), Some(&33));
        assert_eq!(c.stats().evictions, 1);
        // The re-inserted key is now the newest: 2 goes first.
        c.insert(k(4), 4, u64::MAX);
        assert_eq!(c.peek(&k(2)), None);
        assert_eq!(c.peek(&k(3)), Some(&33));
        c.clear();
        assert!(c.is_empty());
        assert_eq!(TokenCache::<u8>::new(0).capacity(), 1);
    }

    proptest! {
        #[test]
        fn stays_bounded(cap in 0usize..6, ops in proptest::collection::vec((0u8..12, 0u64..20, 0u64..20), 0..200)) {
            let mut c = TokenCache::new(cap);
            for (key, now, ttl) in ops {
                if !c.lookup(&k(key), now) {
                    c.insert(k(key), key, now + ttl);
                }
                prop_assert_eq!(c.peek(&k(key)), Some(&key));
                prop_assert!(c.len() <= cap.max(1));
                prop_assert!(c.order.len() <= 2 * c.capacity + 17);
            }
        }
    }
}

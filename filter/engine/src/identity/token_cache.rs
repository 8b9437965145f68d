//! The verified-token cache: what signature verification concluded about a
//! token, keyed by the token's bytes, so a repeated token does not pay for
//! the signature again (ES256 costs milliseconds inside V8).
//!
//! Only successes are stored, and only what follows from the token's bytes
//! (its parsed claims and which key verified it). Everything that moves —
//! the clock, audiences, trusted domains, key rotation and staleness,
//! revocation — is checked again on every hit by the verifier. An entry is
//! dropped once its token is past `exp` (plus skew); a full cache drops its
//! oldest entry. Lookups allocate nothing.
//!
//! The map is indexed by a SipHash of the token under keys drawn at random
//! per cache (so nobody can aim collisions at it), and a hit also compares
//! the whole stored token: two tokens that share a hash are never confused,
//! the later one simply misses. This costs a fraction of what SHA-256 did
//! (the hit path used to spend most of its time hashing, more so in wasm).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A sensible capacity: one entry per distinct live token (each a few hundred
/// bytes to a few KiB).
pub const DEFAULT_TOKEN_CACHE_CAPACITY: usize = 1024;

/// Where a token's entry lives: its keyed hash (from [`TokenCache::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey(u64);

/// The map's own hasher: the key already is a keyed hash; use it as is.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (TokenKey hashes its u64); fold anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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
    /// The token itself: a hit must be this exact token, not just its hash.
    token: Box<str>,
    value: T,
    /// Unix seconds from which the token can never verify again.
    expires_at: u64,
    seq: u64,
}

/// A bounded map from token to verified claims `T`.
#[derive(Debug)]
pub struct TokenCache<T> {
    map: HashMap<TokenKey, Entry<T>, BuildHasherDefault<PassThrough>>,
    /// Random SipHash keys, per cache.
    hasher: RandomState,
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
            map: HashMap::default(),
            hasher: RandomState::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            next_seq: 0,
            stats: TokenCacheStats::default(),
        }
    }

    /// The key of a token (the text after the scheme) in this cache.
    pub fn key(&self, token: &str) -> TokenKey {
        TokenKey(self.hasher.hash_one(token))
    }

    /// Looks `token` (whose key is `key`) up at `now_secs`, counting a hit or
    /// a miss. An expired entry is removed and counts as a miss; an entry of
    /// another token under the same key is a miss and stays.
    pub fn lookup(&mut self, key: &TokenKey, token: &str, now_secs: u64) -> bool {
        match self.map.get(key) {
            Some(entry) if *entry.token != *token => {
                self.stats.misses += 1;
                false
            }
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

    /// The entry for `key`, without counting (after a successful
    /// [`TokenCache::lookup`], which compared the token).
    pub fn peek(&self, key: &TokenKey) -> Option<&T> {
        self.map.get(key).map(|e| &e.value)
    }

    /// Stores verified claims for `token` until `expires_at` (Unix seconds:
    /// the first second at which the token is expired) and returns them.
    /// Whatever was stored under `key` is replaced.
    pub fn insert(&mut self, key: TokenKey, token: &str, value: T, expires_at: u64) -> &T {
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
                token: token.into(),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Tests name tokens by number.
    impl<T> TokenCache<T> {
        fn look(&mut self, n: u8, now: u64) -> bool {
            let token = n.to_string();
            self.lookup(&self.key(&token), &token, now)
        }
        fn put(&mut self, n: u8, value: T, expires_at: u64) -> &T {
            let token = n.to_string();
            self.insert(self.key(&token), &token, value, expires_at)
        }
        fn get(&self, n: u8) -> Option<&T> {
            self.peek(&self.key(&n.to_string()))
        }
    }

    #[test]
    fn a_shared_key_never_confuses_two_tokens() {
        let mut c = TokenCache::new(4);
        // Stand-in for a hash collision: token "b" stored under "a"'s key.
        let key = c.key("a");
        c.insert(key, "b", "claims of b", u64::MAX);
        assert!(!c.lookup(&key, "a", 0));
        assert!(c.lookup(&key, "b", 0));
        // A verified "a" replaces it; "b" then misses.
        c.insert(key, "a", "claims of a", u64::MAX);
        assert!(!c.lookup(&key, "b", 0));
        assert!(c.lookup(&key, "a", 0));
        assert_eq!(c.peek(&key), Some(&"claims of a"));
        assert_eq!(c.len(), 1);
        // Keys are per cache: another cache hashes differently.
        let other: TokenCache<()> = TokenCache::new(1);
        assert_ne!(other.key("a"), key, "random SipHash keys per cache");
    }

    #[test]
    fn hit_miss_and_expiry() {
        let mut c = TokenCache::new(4);
        assert!(!c.look(1, 100));
        assert_eq!(*c.put(1, "a", 200), "a");
        assert!(c.look(1, 150));
        assert_eq!(c.get(1), Some(&"a"));
        assert!(c.look(1, 199));
        // At `expires_at`: removed, a miss.
        assert!(!c.look(1, 200));
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
        c.put(1, 1, u64::MAX);
        c.put(2, 2, u64::MAX);
        c.put(3, 3, u64::MAX);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(1), None);
        assert_eq!(c.stats().evictions, 1);
        // Replacing a present key evicts nothing.
        c.put(3, 33, u64::MAX);
        assert_eq!(c.get(3), Some(&33));
        assert_eq!(c.stats().evictions, 1);
        // The re-inserted key is now the newest: 2 goes first.
        c.put(4, 4, u64::MAX);
        assert_eq!(c.get(2), None);
        assert_eq!(c.get(3), Some(&33));
        c.clear();
        assert!(c.is_empty());
        assert_eq!(TokenCache::<u8>::new(0).capacity(), 1);
    }

    proptest! {
        #[test]
        fn stays_bounded(cap in 0usize..6, ops in proptest::collection::vec((0u8..12, 0u64..20, 0u64..20), 0..200)) {
            let mut c = TokenCache::new(cap);
            for (key, now, ttl) in ops {
                if !c.look(key, now) {
                    c.put(key, key, now + ttl);
                }
                prop_assert_eq!(c.get(key), Some(&key));
                prop_assert!(c.len() <= cap.max(1));
                prop_assert!(c.order.len() <= 2 * c.capacity + 17);
            }
        }
    }
}

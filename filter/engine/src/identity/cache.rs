//! A bounded first-in-first-out map: the storage behind [`super::CertCache`].
//!
//! Entries are never updated once inserted (a parse result is a function of its
//! key), so insertion order is the only order that matters and FIFO eviction
//! needs no bookkeeping on the hit path.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// Hashes a key that is already a uniform hash (a SHA-256 digest) by taking
/// its first eight bytes: nobody can aim digests at one bucket, and SipHash
/// over 32 bytes on every request buys nothing.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct DigestPrefix(u64);

impl Hasher for DigestPrefix {
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes (no length prefix for arrays); a
        // shorter write only ever mixes in what it has.
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            for (dst, src) in word.iter_mut().zip(chunk) {
                *dst = *src;
            }
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The [`BuildHasher`] for digest keys.
pub(crate) type DigestHash = BuildHasherDefault<DigestPrefix>;

/// At most `capacity` entries; inserting into a full map drops the oldest.
#[derive(Debug)]
pub(crate) struct Fifo<K, V, S = RandomState> {
    map: HashMap<K, V, S>,
    // INVARIANT: holds exactly the keys of `map`, oldest first.
    order: VecDeque<K>,
    capacity: usize,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V, S: BuildHasher + Default> Fifo<K, V, S> {
    /// An empty map holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Fifo {
            map: HashMap::default(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            evictions: 0,
        }
    }

    pub(crate) fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    pub(crate) fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Inserts a value for a key (keeping the existing one if the key is
    /// present) and returns the stored value.
    pub(crate) fn insert(&mut self, key: K, value: V) -> &V {
        if !self.map.contains_key(&key) {
            while self.map.len() >= self.capacity {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.map.remove(&oldest);
                self.evictions += 1;
            }
            self.order.push_back(key.clone());
        }
        self.map.entry(key).or_insert(value)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn evicts_oldest_first() {
        let mut fifo: Fifo<_, _> = Fifo::new(2);
        assert_eq!(*fifo.insert(1, "a"), "a");
        assert_eq!(*fifo.insert(2, "b"), "b");
        assert_eq!(*fifo.insert(3, "c"), "c");
        assert_eq!(fifo.len(), 2);
        assert_eq!(fifo.get(&1), None);
        assert_eq!(fifo.get(&2), Some(&"b"));
        assert_eq!(fifo.evictions(), 1);
        // Re-inserting a present key keeps the value and evicts nothing.
        assert_eq!(*fifo.insert(2, "z"), "b");
        assert_eq!(fifo.evictions(), 1);
        fifo.clear();
        assert_eq!(fifo.len(), 0);
        assert!(!fifo.contains_key(&2));
    }

    #[test]
    fn digest_keys_hash_by_their_first_word() {
        let mut fifo: Fifo<[u8; 32], u8, DigestHash> = Fifo::new(4);
        let mut a = [7u8; 32];
        fifo.insert(a, 1);
        // Same first word, different digest: still two entries.
        a[31] = 8;
        fifo.insert(a, 2);
        assert_eq!(fifo.len(), 2);
        assert_eq!(fifo.get(&a), Some(&2));
        assert_eq!(fifo.get(&[7u8; 32]), Some(&1));
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut fifo: Fifo<_, _> = Fifo::new(0);
        assert_eq!(fifo.capacity(), 1);
        assert_eq!(*fifo.insert("k".to_owned(), 1), 1);
        assert_eq!(fifo.get("k"), Some(&1));
        fifo.insert("j".to_owned(), 2);
        assert_eq!(fifo.len(), 1);
        assert!(fifo.contains_key("j"));
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity(cap in 0usize..8, keys in proptest::collection::vec(0u8..16, 0..64)) {
            let mut fifo: Fifo<_, _> = Fifo::new(cap);
            for k in keys {
                prop_assert_eq!(*fifo.insert(k, u32::from(k) * 2), u32::from(k) * 2);
                prop_assert!(fifo.len() <= cap.max(1));
                prop_assert_eq!(fifo.order.len(), fifo.map.len());
                prop_assert!(fifo.contains_key(&k));
            }
        }
    }
}

//! A bounded LRU cache of compiled policies, by policy id, limited both by
//! the number of entries and by their approximate size in bytes, and the
//! entry the worker keeps in it ([`CachedPolicy`]).
//!
//! Small on purpose: a map from key to entry plus an ordered map from a
//! use counter to key; the smallest counter is the least recently used.

use omni::CompiledPolicy;
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

#[derive(Debug)]
struct Slot<V> {
    value: V,
    bytes: usize,
    tick: u64,
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
}

/// LRU by count and bytes. `K` is cheap to clone (an `Arc<str>`).
#[derive(Debug)]
pub struct LruCache<K, V> {
    map: HashMap<K, Slot<V>>,
    order: BTreeMap<u64, K>,
    tick: u64,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    stats: CacheStats,
}

impl<K: Clone + Eq + Hash, V: Clone> LruCache<K, V> {
    /// A cache of at most `max_entries` entries totalling at most `max_bytes`.
    /// Either bound at 0 disables caching.
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        LruCache {
            map: HashMap::with_capacity(max_entries.min(1024)),
            order: BTreeMap::new(),
            tick: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            stats: CacheStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The accounted size of every entry.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The value for `key`, marking it most recently used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let Some(slot) = self.map.get_mut(key) else {
            self.stats.misses += 1;
            return None;
        };
        self.stats.hits += 1;
        self.tick += 1;
        if let Some(k) = self.order.remove(&slot.tick) {
            self.order.insert(self.tick, k);
        }
        slot.tick = self.tick;
        Some(slot.value.clone())
    }

    /// Whether `key` is present (does not change the order or the counters).
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Inserts or replaces `key`, evicting least recently used entries until
    /// both bounds hold. An entry larger than the byte bound is not cached
    /// (returns `false`).
    pub fn insert(&mut self, key: K, value: V, bytes: usize) -> bool {
        self.remove(&key);
        if self.max_entries == 0 || bytes > self.max_bytes {
            return false;
        }
        while self.map.len() + 1 > self.max_entries || self.bytes + bytes > self.max_bytes {
            if !self.evict_one() {
                break;
            }
        }
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.map.insert(
            key,
            Slot {
                value,
                bytes,
                tick: self.tick,
            },
        );
        self.bytes += bytes;
        self.stats.inserts += 1;
        true
    }

    /// Removes `key`; its value when it was present.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let slot = self.map.remove(key)?;
        self.order.remove(&slot.tick);
        self.bytes -= slot.bytes;
        Some(slot.value)
    }

    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }

    fn evict_one(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_first() else {
            return false;
        };
        if let Some(slot) = self.map.remove(&key) {
            self.bytes -= slot.bytes;
            self.stats.evictions += 1;
        }
        true
    }
}

/// A compiled policy as cached: with the options it was checked under and
/// the parts of a reply that depend only on the policy.
#[derive(Debug)]
pub struct CachedPolicy {
    pub policy: Arc<CompiledPolicy>,
    /// [`omni::CheckOptions::fingerprint`] of the options it was checked under.
    pub checked_under: u64,
    /// Warnings and notes (a cached policy has no errors).
    pub diagnostics_json: String,
    pub rules_json: String,
}

impl CachedPolicy {
    pub(crate) fn approx_bytes(&self, key: &str) -> usize {
        self.policy.approx_bytes()
            + self.diagnostics_json.len()
            + self.rules_json.len()
            + key.len()
            + std::mem::size_of::<Self>()
    }

    /// Whether this entry was checked under options of this fingerprint.
    pub(crate) fn checked_as(&self, fingerprint: u64) -> bool {
        self.checked_under == fingerprint
    }
}

/// The cache the worker holds: policy id → compiled policy and what a reply
/// needs besides the decision.
pub type PolicyCache = LruCache<Arc<str>, Arc<CachedPolicy>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn c(n: usize, b: usize) -> LruCache<Arc<str>, u32> {
        LruCache::new(n, b)
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let mut cache = c(2, 1000);
        cache.insert("a".into(), 1, 10);
        cache.insert("b".into(), 2, 10);
        assert_eq!(cache.get("a"), Some(1)); // a is now newer than b
        cache.insert("c".into(), 3, 10);
        assert!(cache.contains("a") && cache.contains("c") && !cache.contains("b"));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.stats().evictions, 1);
    }

    #[test]
    fn evicts_by_bytes_and_refuses_oversized() {
        let mut cache = c(10, 100);
        cache.insert("a".into(), 1, 40);
        cache.insert("b".into(), 2, 40);
        cache.insert("c".into(), 3, 40); // 120 > 100: a goes
        assert!(!cache.contains("a"));
        assert_eq!(cache.bytes(), 80);
        assert!(!cache.insert("huge".into(), 4, 101));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.bytes(), 80);
    }

    #[test]
    fn replace_keeps_accounting() {
        let mut cache = c(10, 100);
        cache.insert("a".into(), 1, 40);
        cache.insert("a".into(), 2, 50);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.bytes(), 50);
        assert_eq!(cache.get("a"), Some(2));
        assert_eq!(cache.remove("a"), Some(2));
        assert_eq!(cache.bytes(), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn zero_bounds_disable() {
        let mut cache = c(0, 100);
        assert!(!cache.insert("a".into(), 1, 1));
        assert!(cache.get("a").is_none());
        assert_eq!(cache.stats().misses, 1);
    }

    #[test]
    fn many_operations_keep_invariants() {
        let mut cache = c(8, 500);
        for i in 0..1000u32 {
            let k: Arc<str> = format!("k{}", i % 13).into();
            if i % 3 == 0 {
                cache.get(&*k);
            } else {
                cache.insert(k, i, (i as usize * 7) % 120);
            }
            assert!(cache.len() <= 8);
            assert!(cache.bytes() <= 500);
            assert_eq!(cache.order.len(), cache.map.len());
            let sum: usize = cache.map.values().map(|s| s.bytes).sum();
            assert_eq!(sum, cache.bytes());
        }
    }
}

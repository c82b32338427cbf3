//! Request ids and the little randomness the service needs (recycling
//! jitter), from std's randomly keyed SipHash: no extra dependency, no unsafe.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A pseudo-random u64, keyed per process by the OS's randomness.
pub fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// The client's request id when it is 1–64 characters of `[A-Za-z0-9._-]`.
pub fn valid_request_id(s: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A new request id: 20 hex digits.
pub fn new_request_id() -> String {
    let a = random_u64();
    let b = random_u64() & 0xffff;
    format!("{a:016x}{b:04x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_request_id(b"abc-1.2_3"));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id(&[b'a'; 65]));
        let a = new_request_id();
        assert_eq!(a.len(), 20);
        assert!(valid_request_id(a.as_bytes()));
        assert_ne!(a, new_request_id());
    }
}

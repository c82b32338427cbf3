//! Admission guard rails of `docs/api.md#limits-tenants-auth` that run before any work: token
//! buckets per client or tenant, the in-flight cap (global and per tenant),
//! and who the client is when a trusted proxy sits in front.

use crate::lock::lock;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by client. The map is bounded: when it is full, idle
/// (refilled) buckets are dropped first, since a full bucket carries no state.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    pub fn new() -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`. `Err(wait)`: over the rate, retry after `wait`.
    pub fn check(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        max_clients: usize,
    ) -> Result<(), Duration> {
        self.check_at(key, rate, burst, max_clients, Instant::now())
    }

    fn check_at(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        max_clients: usize,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut map = lock(&self.buckets);
        if !map.contains_key(key) && map.len() >= max_clients {
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            if map.len() >= max_clients {
                // Still full of active clients: refuse newcomers rather than
                // grow without bound.
                return Err(Duration::from_secs(1));
            }
        }
        let b = map.entry(key.to_string()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            Err(Duration::from_secs_f64(wait.clamp(0.0, 3600.0)))
        }
    }

    #[cfg(test)]
    pub fn clients(&self) -> usize {
        lock(&self.buckets).len()
    }
}

/// `Retry-After` in whole seconds (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// `1 second`, `N seconds`: the wait in the 429 and quarantine messages.
pub fn seconds(n: &u64) -> String {
    if *n == 1 {
        "1 second".to_string()
    } else {
        format!("{n} seconds")
    }
}

/// Counts requests admitted and not yet answered; the guard gives the slot back.
#[derive(Debug, Default)]
pub struct Inflight {
    total: Arc<AtomicUsize>,
    per_tenant: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

pub struct InflightGuard {
    counters: Vec<Arc<AtomicUsize>>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        for c in &self.counters {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Inflight {
    pub fn current(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    /// Admits one request unless the global or the tenant's cap is reached.
    pub fn try_acquire(&self, max: usize, tenant: Option<(&str, usize)>) -> Option<InflightGuard> {
        let mut counters = Vec::with_capacity(2);
        if !try_inc(&self.total, max) {
            return None;
        }
        counters.push(self.total.clone());
        if let Some((name, tmax)) = tenant {
            let c = {
                let mut map = lock(&self.per_tenant);
                map.entry(name.to_string()).or_default().clone()
            };
            if !try_inc(&c, tmax) {
                // Dropping the guard gives back the global slot.
                drop(InflightGuard { counters });
                return None;
            }
            counters.push(c);
        }
        Some(InflightGuard { counters })
    }
}

fn try_inc(c: &AtomicUsize, max: usize) -> bool {
    c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
        (v < max).then_some(v + 1)
    })
    .is_ok()
}

/// The client address a request is charged to: the peer, or when the peer
/// is a trusted proxy, the right-most `X-Forwarded-For` entry that is not
/// itself a trusted proxy (left-most entries are client-supplied and forgeable).
pub fn client_ip(peer: SocketAddr, xff: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    let peer_ip = peer.ip();
    if !trusted.contains(&peer_ip) {
        return peer_ip;
    }
    let Some(xff) = xff else {
        return peer_ip;
    };
    for part in xff.rsplit(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return ip,
            Err(_) => return peer_ip,
        }
    }
    peer_ip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        assert!(rl.check_at("a", 1.0, 2.0, 10, t0).is_ok());
        assert!(rl.check_at("a", 1.0, 2.0, 10, t0).is_ok());
        let wait = rl.check_at("a", 1.0, 2.0, 10, t0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1);
        assert!(rl.check_at("b", 1.0, 2.0, 10, t0).is_ok());
        assert!(rl
            .check_at("a", 1.0, 2.0, 10, t0 + Duration::from_millis(1100))
            .is_ok());
    }

    #[test]
    fn client_map_is_bounded() {
        let rl = RateLimiter::new();
        let t0 = Instant::now();
        assert!(rl.check_at("a", 1.0, 5.0, 1, t0).is_ok());
        assert!(rl.check_at("b", 1.0, 5.0, 1, t0).is_err());
        // Once "a" has refilled it is forgotten and "b" gets in.
        assert!(rl
            .check_at("b", 1.0, 5.0, 1, t0 + Duration::from_secs(2))
            .is_ok());
        assert_eq!(rl.clients(), 1);
    }

    #[test]
    fn inflight_caps() {
        let inf = Inflight::default();
        let g1 = inf.try_acquire(2, Some(("t", 1))).unwrap();
        assert!(inf.try_acquire(2, Some(("t", 1))).is_none());
        assert_eq!(inf.current(), 1);
        let g2 = inf.try_acquire(2, None).unwrap();
        assert!(inf.try_acquire(2, None).is_none());
        drop(g1);
        drop(g2);
        assert_eq!(inf.current(), 0);
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let peer = SocketAddr::new(proxy, 1234);
        let other = SocketAddr::new("10.0.0.9".parse().unwrap(), 1);
        let xff = Some("1.2.3.4, 5.6.7.8");
        assert_eq!(client_ip(other, xff, &[proxy]), other.ip());
        assert_eq!(
            client_ip(peer, xff, &[proxy]),
            "5.6.7.8".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, Some("1.2.3.4, 10.0.0.1"), &[proxy]),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, Some("junk"), &[proxy]), proxy);
    }

    #[test]
    fn waits_are_said_in_the_right_number() {
        assert_eq!(seconds(&1), "1 second");
        assert_eq!(seconds(&2), "2 seconds");
        assert_eq!(seconds(&0), "0 seconds");
        let e = crate::api::ApiError::RateLimited(1);
        assert_eq!(e.message(), "too many requests; retry after 1 second");
        let e = crate::api::ApiError::RateLimited(3);
        assert_eq!(e.message(), "too many requests; retry after 3 seconds");
    }
}

//! The registry of stored policies as this replica serves them: the map
//! (tenant, name) → active revision {number, policy id, text} that
//! evaluation reads without touching the database, kept in step with the
//! store by [`sync`] (all of it at start, then each change) and at once by
//! the writes made through this replica; and whether the store answers
//! (readiness, `store_unavailable`). When the store is away the map keeps
//! its last good copy, so policies already loaded go on being evaluated.
//!
//! - [`sync`]: the task that follows the store's changes;
//! - [`routes`]: the HTTP API under `/api/v1/policies`.

pub mod routes;
pub mod sync;

use crate::config::StoreSection;
use crate::lock;
use crate::metrics::Metrics;
use crate::store::{
    ActivePolicy, Actor, Change, PolicyDetail, PolicySummary, Quotas, RevisionInfo, Store,
    StoreError, Stored,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

/// The tenant of every request when auth is off.
pub const ANONYMOUS_TENANT: &str = "default";
/// The actor the history records when auth is off.
pub const ANONYMOUS_ACTOR: &str = "anonymous";

/// What a replica evaluates for a policy name: its active revision.
#[derive(Debug)]
pub struct Served {
    pub revision: u64,
    /// `sha256:<hex>` of `text`, as stored: never hashed again per request.
    pub policy_id: String,
    pub text: Arc<str>,
}

/// One name's state in the map, with the seq of the change it reflects,
/// so an older view (a sync read that raced a write) never replaces a
/// newer one.
struct Slot {
    seq: i64,
    served: Option<Arc<Served>>,
}

/// How this replica knows its view: read back from the store after the
/// change (`Read`: the state then, at least as new as the change), or built
/// from the change itself (`Made`: exactly the state after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Read,
    Made,
}

/// Whether the store answered last time it was asked.
#[derive(Debug, Clone)]
struct Health {
    available: bool,
    /// When it last answered.
    last_ok: Option<SystemTime>,
    /// Since when it has not answered (while unavailable).
    down_since: Option<SystemTime>,
}

pub struct Registry {
    store: Store,
    /// tenant → name → slot: a lookup borrows both names, no allocation.
    map: RwLock<HashMap<String, HashMap<String, Slot>>>,
    /// The seq of the last change the sync task applied.
    synced_seq: AtomicI64,
    health: Mutex<Health>,
    metrics: Arc<Metrics>,
}

impl Registry {
    /// Opens the store and loads every active policy. A failure is a
    /// start-up error: a replica that cannot read the store would serve
    /// nothing it was asked for by name.
    pub async fn open(cfg: &StoreSection, metrics: Arc<Metrics>) -> Result<Registry, StoreError> {
        let store = Store::open(cfg).await?;
        let (active, seq) = store.active_policies().await?;
        let r = Registry {
            store,
            map: RwLock::new(HashMap::new()),
            synced_seq: AtomicI64::new(seq),
            health: Mutex::new(Health {
                available: true,
                last_ok: Some(SystemTime::now()),
                down_since: None,
            }),
            metrics,
        };
        for p in active {
            let (tenant, name) = (p.tenant.clone(), p.name.clone());
            r.apply(&tenant, &name, seq, Some(served_of(p)), Known::Read);
        }
        Ok(r)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }

    /// What this replica evaluates for `name` of `tenant` now.
    pub fn served(&self, tenant: &str, name: &str) -> Option<Arc<Served>> {
        lock::read(&self.map)
            .get(tenant)
            .and_then(|t| t.get(name))
            .and_then(|s| s.served.clone())
    }

    /// How many policies this replica serves.
    pub fn served_count(&self) -> usize {
        lock::read(&self.map)
            .values()
            .map(|t| t.values().filter(|s| s.served.is_some()).count())
            .sum()
    }

    /// Whether the store answered last time it was asked.
    pub fn available(&self) -> bool {
        lock::lock(&self.health).available
    }

    /// The store's state for readiness and metrics.
    pub fn health_json(&self) -> serde_json::Value {
        let h = lock::lock(&self.health).clone();
        serde_json::json!({
            "backend": self.backend(),
            "available": h.available,
            "lastOkAt": h.last_ok.map(rfc3339),
            "unavailableSince": h.down_since.map(rfc3339),
            "servedPolicies": self.served_count(),
        })
    }

    /// Records how a call to the store went: a failure to reach it flips
    /// readiness at once; any answer (even "not found") means it is back.
    fn note<T>(&self, r: &Result<T, StoreError>) {
        let now = SystemTime::now();
        let mut h = lock::lock(&self.health);
        match r {
            Err(StoreError::Unavailable(reason)) => {
                if h.available {
                    tracing::warn!(
                        reason = %reason,
                        backend = self.store.backend(),
                        "policy store unavailable; serving the policies already loaded"
                    );
                    h.down_since = Some(now);
                }
                h.available = false;
            }
            _ => {
                if !h.available {
                    tracing::info!(
                        backend = self.store.backend(),
                        "policy store available again"
                    );
                }
                h.available = true;
                h.last_ok = Some(now);
                h.down_since = None;
            }
        }
    }

    /// Runs one store call, noting whether the store answered.
    async fn call<T>(
        &self,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let r = f.await;
        self.note(&r);
        r
    }

    /// Sets what `name` of `tenant` is served as of change `seq`, unless the
    /// map already reflects a later change (`Read` views also replace one
    /// of the same seq: they are at least as new).
    fn apply(&self, tenant: &str, name: &str, seq: i64, served: Option<Served>, known: Known) {
        let mut map = lock::write(&self.map);
        let names = map.entry(tenant.to_string()).or_default();
        if let Some(slot) = names.get(name) {
            let newer = match known {
                Known::Read => seq >= slot.seq,
                Known::Made => seq > slot.seq,
            };
            if !newer {
                return;
            }
        }
        let revision = served.as_ref().map(|s| s.revision);
        let same = names
            .get(name)
            .and_then(|s| s.served.as_ref())
            .map(|s| s.revision)
            == revision;
        match served {
            Some(s) => {
                names.insert(
                    name.to_string(),
                    Slot {
                        seq,
                        served: Some(Arc::new(s)),
                    },
                );
            }
            // Kept as a tombstone with its seq, so a late, older view does
            // not bring the policy back.
            None => {
                names.insert(name.to_string(), Slot { seq, served: None });
            }
        }
        drop(map);
        if !same {
            self.metrics.served_revision(tenant, name, revision);
            tracing::info!(
                tenant,
                policy = name,
                revision = revision.unwrap_or(0),
                seq,
                "serving {}",
                match revision {
                    Some(n) => format!("revision {n}"),
                    None => "no revision".to_string(),
                }
            );
        }
    }

    /// After a change made through this replica: serve its outcome now. An
    /// activation needs the text of the revision it activated; if the store
    /// cannot give it at once, the sync task catches up.
    async fn follow(&self, change: &Change) {
        let served = match change.to {
            Some(n) if change.kind != crate::store::ChangeKind::Delete => {
                match self
                    .call(self.store.revision(&change.tenant, &change.name, n))
                    .await
                {
                    Ok((info, text)) => Some(served_from(info, text.into())),
                    Err(_) => return,
                }
            }
            _ => None,
        };
        self.apply(
            &change.tenant,
            &change.name,
            change.seq,
            served,
            Known::Made,
        );
    }

    // ---- writes: through the store, then into the map at once ----------

    /// Stores `text` (already checked) as a revision of `name`.
    pub async fn put(
        &self,
        actor: &Actor,
        name: &str,
        text: Arc<str>,
        activate: bool,
        if_match: Option<u64>,
        quotas: &Quotas,
    ) -> Result<Stored, StoreError> {
        let stored = self
            .call(
                self.store
                    .put(actor, name, &text, activate, if_match, quotas),
            )
            .await?;
        if let Some(change) = &stored.change {
            let served = (stored.active == Some(stored.revision.number))
                .then(|| served_from(stored.revision.clone(), text));
            match served {
                Some(s) => self.apply(
                    &change.tenant,
                    &change.name,
                    change.seq,
                    Some(s),
                    Known::Made,
                ),
                // Stored without activating: what is served is unchanged,
                // unless the put revived a deleted name (then: nothing).
                None if stored.active.is_none() => {
                    self.apply(&change.tenant, &change.name, change.seq, None, Known::Made)
                }
                None => {}
            }
        }
        Ok(stored)
    }

    pub async fn activate(
        &self,
        actor: &Actor,
        name: &str,
        number: u64,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let change = self
            .call(self.store.activate(actor, name, number, if_match))
            .await?;
        self.follow(&change).await;
        Ok(change)
    }

    pub async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let change = self
            .call(self.store.rollback(actor, name, if_match))
            .await?;
        self.follow(&change).await;
        Ok(change)
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let change = self.call(self.store.delete(actor, name, if_match)).await?;
        self.follow(&change).await;
        Ok(change)
    }

    // ---- reads: straight from the store ------------------------------

    pub async fn list(&self, tenant: &str) -> Result<Vec<PolicySummary>, StoreError> {
        self.call(self.store.list(tenant)).await
    }

    pub async fn get(&self, tenant: &str, name: &str) -> Result<PolicyDetail, StoreError> {
        self.call(self.store.get(tenant, name)).await
    }

    pub async fn history(&self, tenant: &str, name: &str) -> Result<Vec<Change>, StoreError> {
        self.call(self.store.history(tenant, name)).await
    }

    pub async fn revision(
        &self,
        tenant: &str,
        name: &str,
        number: u64,
    ) -> Result<(RevisionInfo, String), StoreError> {
        self.call(self.store.revision(tenant, name, number)).await
    }
}

fn served_of(p: ActivePolicy) -> Served {
    Served {
        revision: p.revision,
        policy_id: p.policy_id,
        text: p.text,
    }
}

fn served_from(info: RevisionInfo, text: Arc<str>) -> Served {
    Served {
        revision: info.number,
        policy_id: info.policy_id,
        text,
    }
}

/// A time as the API writes it: RFC 3339, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    rfc3339_ms(ms)
}

/// Milliseconds since the Unix epoch as RFC 3339, UTC.
pub fn rfc3339_ms(ms: i64) -> String {
    omni::timefmt::format_rfc3339(omni::Timestamp(ms.saturating_mul(1_000_000)))
}

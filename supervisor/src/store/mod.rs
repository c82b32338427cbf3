//! The policy store (issue 16, `docs/operations.md`): named, versioned
//! policies per tenant, their change history and quotas, behind one
//! [`Store`] with two back-ends — SQLite, the embedded default (one file,
//! [`sqlite`]), and PostgreSQL for a fleet of replicas ([`postgres`], with
//! LISTEN/NOTIFY wake-ups). This module owns the types, the rules every
//! back-end applies the same way (quotas, `If-Match`, what rollback goes
//! back to) and the migrations runner's bookkeeping; the back-ends own
//! their SQL. Every write is one transaction, committed durably before it
//! is acknowledged.

// The registry (the HTTP API, fleet sync) is the caller; until every
// operation has one there, the unit tests are the only user of some of it.
#![cfg_attr(not(test), allow(dead_code))]

pub mod postgres;
pub mod sqlite;

#[cfg(test)]
#[path = "../../tests/it/common/postgres.rs"]
pub mod testing;
#[cfg(test)]
mod tests;

use crate::config::StoreSection;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who makes a change: the tenant and the credential's name (a token's
/// name or a certificate's identity), never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub tenant: String,
    pub credential: String,
}

/// One immutable revision of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionInfo {
    /// 1, 2, 3… per policy; never reused, also after a delete.
    pub number: u64,
    /// `sha256:<hex>` of the text (what workers cache compiled policies by).
    pub policy_id: String,
    pub bytes: u64,
    pub created_at_ms: i64,
    /// The credential name of the actor who stored it.
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySummary {
    pub name: String,
    pub active: Option<u64>,
    /// The highest revision number (0 never happens: a policy exists once
    /// it has a revision).
    pub latest: u64,
    /// How many revisions are stored.
    pub revisions: u64,
    /// The time of the last change (store, activate, rollback, delete).
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDetail {
    pub summary: PolicySummary,
    /// Ascending by number.
    pub revisions: Vec<RevisionInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// A put that created a revision, or activated or revived an existing
    /// one: `from` is the active revision before, `to` the stored revision
    /// (active after the put only if it activated it).
    Store,
    /// `from` the active revision before, `to` the one activated.
    Activate,
    /// `from` the revision rolled back from, `to` the one active again.
    Rollback,
    /// `from` the active revision before, `to` none.
    Delete,
}

impl ChangeKind {
    /// The name in the store's tables and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Store => "store",
            ChangeKind::Activate => "activate",
            ChangeKind::Rollback => "rollback",
            ChangeKind::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Result<ChangeKind, StoreError> {
        Ok(match s {
            "store" => ChangeKind::Store,
            "activate" => ChangeKind::Activate,
            "rollback" => ChangeKind::Rollback,
            "delete" => ChangeKind::Delete,
            other => {
                return Err(StoreError::Unavailable(format!(
                    "unknown change kind {other:?} in the store"
                )))
            }
        })
    }
}

/// One row of the change history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Global, increasing with commit order across all tenants.
    pub seq: i64,
    pub tenant: String,
    pub name: String,
    pub kind: ChangeKind,
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// The credential name of the actor.
    pub actor: String,
    pub at_ms: i64,
}

/// A policy's active revision with its text: what a replica evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePolicy {
    pub tenant: String,
    pub name: String,
    pub revision: u64,
    pub policy_id: String,
    pub text: Arc<str>,
}

/// A tenant's limits on what it may store (from `[store]` and
/// `[tenants.NAME]`, see [`crate::config::Config::store_quotas`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Policies that are not deleted.
    pub max_policies: u64,
    /// Revisions of one policy (kept forever, also after a delete).
    pub max_revisions: u64,
    /// Bytes of all the tenant's stored revision texts.
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    Policies,
    Revisions,
    Bytes,
}

/// The answer to a put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub revision: RevisionInfo,
    /// False when a revision with the same text already existed.
    pub created: bool,
    /// The policy's active revision after the put.
    pub active: Option<u64>,
    /// The change recorded, if the put changed anything.
    pub change: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("no such policy")]
    PolicyNotFound,
    #[error("no revision {0} of this policy")]
    RevisionNotFound(u64),
    /// `If-Match` named another revision than the active one.
    #[error("the active revision is {}", active.map_or("none".to_string(), |n| n.to_string()))]
    Conflict { active: Option<u64> },
    /// No earlier active revision in the history.
    #[error("no earlier active revision to roll back to")]
    NothingToRollBack,
    #[error("{} quota of {limit} reached", kind.as_str())]
    Quota { kind: QuotaKind, limit: u64 },
    /// The database is unreachable or failed. The reason is for the log
    /// only (it may name files or hosts): clients get `store_unavailable`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl QuotaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Policies => "policy",
            QuotaKind::Revisions => "revision",
            QuotaKind::Bytes => "storage",
        }
    }
}

/// The policy store: one of the two back-ends. Cheap to clone (the
/// back-ends share their connections).
#[derive(Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PostgresStore),
}

/// Dispatches one call to the back-end.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Sqlite($s) => $call.await,
            Store::Postgres($s) => $call.await,
        }
    };
}

impl Store {
    /// Opens the configured store (PostgreSQL when `store.url` is set, else
    /// the SQLite file `store.path`) and applies pending migrations.
    pub async fn open(cfg: &StoreSection) -> Result<Store, StoreError> {
        if cfg.url.is_empty() {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(cfg).await?))
        } else {
            Ok(Store::Postgres(postgres::PostgresStore::open(cfg).await?))
        }
    }

    /// `"sqlite"` or `"postgres"` (for logs and metrics).
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Stores `text` as a new revision of `name` (or finds the revision
    /// with the same text), activating it when `activate`. `if_match`:
    /// `Some(n)` requires revision `n` to be active (`Some(0)`: none).
    pub async fn put(
        &self,
        actor: &Actor,
        name: &str,
        text: &str,
        activate: bool,
        if_match: Option<u64>,
        quotas: &Quotas,
    ) -> Result<Stored, StoreError> {
        dispatch!(self, s => s.put(actor, name, text, activate, if_match, quotas))
    }

    /// The tenant's policies that are not deleted, by name.
    pub async fn list(&self, tenant: &str) -> Result<Vec<PolicySummary>, StoreError> {
        dispatch!(self, s => s.list(tenant))
    }

    /// A policy with its revisions; a deleted one is `PolicyNotFound`.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<PolicyDetail, StoreError> {
        dispatch!(self, s => s.get(tenant, name))
    }

    /// One revision and its text.
    pub async fn revision(
        &self,
        tenant: &str,
        name: &str,
        number: u64,
    ) -> Result<(RevisionInfo, String), StoreError> {
        dispatch!(self, s => s.revision(tenant, name, number))
    }

    pub async fn activate(
        &self,
        actor: &Actor,
        name: &str,
        number: u64,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        dispatch!(self, s => s.activate(actor, name, number, if_match))
    }

    /// Activates the revision that was active before the current one
    /// (each rollback goes one step further back; see [`rollback_target`]).
    pub async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        dispatch!(self, s => s.rollback(actor, name, if_match))
    }

    /// Soft delete: the policy disappears from list/get and has no active
    /// revision; its revisions and history stay, and a put revives it.
    pub async fn delete(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        dispatch!(self, s => s.delete(actor, name, if_match))
    }

    /// The policy's changes, ascending. Readable after a delete (who
    /// deleted it is part of the history); `PolicyNotFound` only for a
    /// name that never existed.
    pub async fn history(&self, tenant: &str, name: &str) -> Result<Vec<Change>, StoreError> {
        dispatch!(self, s => s.history(tenant, name))
    }

    /// Every change with `seq` greater than the given one, all tenants,
    /// ascending.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<Change>, StoreError> {
        dispatch!(self, s => s.changes_since(seq))
    }

    /// Every active policy with its text, and the latest change seq, read
    /// in one snapshot (changes after that seq are not reflected).
    pub async fn active_policies(&self) -> Result<(Vec<ActivePolicy>, i64), StoreError> {
        dispatch!(self, s => s.active_policies())
    }

    pub async fn active_policy(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ActivePolicy>, StoreError> {
        dispatch!(self, s => s.active_policy(tenant, name))
    }

    /// The store's schema version (its highest applied migration).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        dispatch!(self, s => s.schema_version())
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping())
    }

    /// PostgreSQL: a receiver bumped to the latest seq on each NOTIFY (and
    /// after the listening connection is re-established, which may have
    /// missed some). SQLite: `None`; poll [`Store::changes_since`].
    pub fn wakeups(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        match self {
            Store::Sqlite(_) => None,
            Store::Postgres(s) => Some(s.wakeups()),
        }
    }
}

// ---- Rules shared by the back-ends -------------------------------------

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `if_match` against the active revision: `Some(0)` means "none active".
pub(crate) fn check_if_match(active: Option<u64>, if_match: Option<u64>) -> Result<(), StoreError> {
    match if_match {
        None => Ok(()),
        Some(0) if active.is_none() => Ok(()),
        Some(n) if active == Some(n) => Ok(()),
        Some(_) => Err(StoreError::Conflict { active }),
    }
}

/// The policy row as a write transaction finds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyState {
    pub id: i64,
    pub active: Option<u64>,
    pub deleted: bool,
}

/// What a put reads before it decides.
#[derive(Debug, Clone, Default)]
pub(crate) struct PutFacts {
    pub policy: Option<PolicyState>,
    /// The number of this policy's revision with the same text, if any.
    pub same_text: Option<u64>,
    /// Policies of the tenant that are not deleted.
    pub live_policies: u64,
    /// Revisions of this policy.
    pub revisions: u64,
    /// Its highest revision number.
    pub latest: u64,
    /// Bytes of all the tenant's stored texts.
    pub tenant_bytes: u64,
}

/// What a put does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PutPlan {
    /// The revision returned (new or existing).
    pub number: u64,
    /// Insert a revision with `number`.
    pub create: bool,
    /// The policy was deleted and comes back.
    pub revive: bool,
    pub active_before: Option<u64>,
    pub active_after: Option<u64>,
}

impl PutPlan {
    /// A change is recorded only when something changed.
    pub fn changed(&self) -> bool {
        self.create || self.revive || self.active_after != self.active_before
    }
}

/// The put's decision: precondition, then quotas (policies, revisions,
/// bytes), then the revision number. Same text: no quota but the policy
/// count (a revive adds a policy) applies.
pub(crate) fn plan_put(
    f: &PutFacts,
    bytes: u64,
    activate: bool,
    if_match: Option<u64>,
    q: &Quotas,
) -> Result<PutPlan, StoreError> {
    let active_before = f.policy.filter(|p| !p.deleted).and_then(|p| p.active);
    check_if_match(active_before, if_match)?;
    let revive = f.policy.is_some_and(|p| p.deleted);
    let adds_policy = f.policy.is_none() || revive;
    if adds_policy && f.live_policies >= q.max_policies {
        return Err(StoreError::Quota {
            kind: QuotaKind::Policies,
            limit: q.max_policies,
        });
    }
    let (number, create) = match f.same_text {
        Some(n) => (n, false),
        None => {
            if f.revisions >= q.max_revisions {
                return Err(StoreError::Quota {
                    kind: QuotaKind::Revisions,
                    limit: q.max_revisions,
                });
            }
            if f.tenant_bytes.saturating_add(bytes) > q.max_bytes {
                return Err(StoreError::Quota {
                    kind: QuotaKind::Bytes,
                    limit: q.max_bytes,
                });
            }
            (f.latest + 1, true)
        }
    };
    Ok(PutPlan {
        number,
        create,
        revive,
        active_before,
        active_after: if activate {
            Some(number)
        } else {
            active_before
        },
    })
}

/// The revision a rollback activates, from the policy's history as
/// `(kind, active revision after the change)` in ascending order.
///
/// The history is replayed as a stack of activations: a store that
/// activated, an activate or a revive pushes the newly active revision; a
/// rollback pops the one it left. So repeated rollbacks walk further back
/// (3 → 2 → 1), and a rollback after an activate returns to what was
/// active before it. A delete clears the active revision but keeps the
/// stack. `None` when there is nothing earlier than `active`.
pub(crate) fn rollback_target(history: &[(ChangeKind, Option<u64>)], active: u64) -> Option<u64> {
    let mut stack: Vec<u64> = Vec::new();
    for &(kind, after) in history {
        match kind {
            ChangeKind::Rollback => {
                stack.pop();
                if let Some(a) = after {
                    if stack.last() != Some(&a) {
                        stack.push(a);
                    }
                }
            }
            ChangeKind::Delete => {}
            ChangeKind::Store | ChangeKind::Activate => {
                if let Some(a) = after {
                    if stack.last() != Some(&a) {
                        stack.push(a);
                    }
                }
            }
        }
    }
    match stack.as_slice() {
        [.., prev, top] if *top == active => Some(*prev),
        _ => None,
    }
}

/// `u64` from a database integer (never negative in our tables).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A database integer from a `u64` (revision numbers and sizes stay far
/// below `i64::MAX`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One versioned migration: applied in order, recorded by version in
/// `schema_migrations`.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The migrations not applied yet, in order, after checking the store is
/// not newer than this build (an older omnid must not write to a schema it
/// does not know).
pub(crate) fn pending<'a>(
    all: &'a [Migration],
    applied: &[i64],
) -> Result<Vec<&'a Migration>, StoreError> {
    let known = all.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(&newer) = applied.iter().find(|&&v| v > known) {
        return Err(StoreError::Unavailable(format!(
            "the store has schema version {newer}, newer than this omnid knows ({known}); \
             upgrade omnid or use another store"
        )));
    }
    Ok(all
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .collect())
}

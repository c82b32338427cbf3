//! The SQLite back-end: one file (`store.path`), linked against the
//! system's libsqlite3. WAL journal with `synchronous=FULL`, so a commit is
//! on disk when a put is acknowledged (SIGKILL or power loss lose nothing
//! acknowledged). All calls run on tokio's blocking threads.
//!
//! Writes go through one connection behind an async FIFO lock, so many
//! concurrent puts queue in order instead of spinning on SQLite's busy
//! handler; each is a `BEGIN IMMEDIATE` transaction (the busy timeout only
//! matters when another process has the file open). Reads use a small set
//! of further connections and see the last commit (WAL readers do not
//! block the writer).

use super::{
    check_if_match, now_ms, pending, plan_put, rollback_target, to_i64, to_u64, ActivePolicy,
    Actor, Change, ChangeKind, Migration, PolicyDetail, PolicyState, PolicySummary, PutFacts,
    Quotas, RevisionInfo, StoreError, Stored,
};
use crate::config::StoreSection;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The schema, in order; a version is never edited once released.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "policies",
    sql: include_str!("migrations/sqlite/0001_policies.sql"),
}];

/// How long a statement waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// The one writing connection; the async lock queues writers fairly.
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// Idle reading connections (at most `pool_size` are kept).
    readers: Mutex<Vec<Connection>>,
    pool_size: usize,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

/// Runs blocking database work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let shown = path.display();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open the store file {shown}: {e}")))?;
    let setup = || -> Result<(), rusqlite::Error> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "journal_mode is {mode}, not wal"
            )));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(())
    };
    setup().map_err(|e| {
        StoreError::Unavailable(format!("cannot set up the store file {shown}: {e}"))
    })?;
    Ok(conn)
}

/// Applies the pending migrations in one transaction.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version       INTEGER PRIMARY KEY,
             name          TEXT    NOT NULL,
             applied_at_ms INTEGER NOT NULL
         )",
    )
    .map_err(db)?;
    let applied: Vec<i64> = {
        let mut st = tx
            .prepare("SELECT version FROM schema_migrations")
            .map_err(db)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    for m in pending(MIGRATIONS, &applied)? {
        tx.execute_batch(m.sql).map_err(|e| {
            StoreError::Unavailable(format!("migration {} ({}): {e}", m.version, m.name))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now_ms()],
        )
        .map_err(db)?;
    }
    tx.commit().map_err(db)
}

impl SqliteStore {
    pub async fn open(cfg: &StoreSection) -> Result<SqliteStore, StoreError> {
        let path = PathBuf::from(&cfg.path);
        let pool_size = cfg.pool_size.max(1);
        let p = path.clone();
        let writer = blocking(move || {
            let mut conn = open_connection(&p)?;
            migrate(&mut conn)?;
            Ok(conn)
        })
        .await?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path,
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
                readers: Mutex::new(Vec::new()),
                pool_size,
            }),
        })
    }

    /// One write transaction; an error rolls it back.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.writer.clone().lock_owned().await;
        blocking(move || {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let out = f(&tx)?;
            tx.commit().map_err(db)?;
            Ok(out)
        })
        .await
    }

    /// One read on an idle reading connection (or a new one).
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        blocking(move || {
            let idle = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let mut conn = match idle {
                Some(c) => c,
                None => open_connection(&inner.path)?,
            };
            let out = f(&mut conn);
            let mut idle = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < inner.pool_size {
                idle.push(conn);
            }
            out
        })
        .await
    }

    pub async fn put(
        &self,
        actor: &Actor,
        name: &str,
        text: &str,
        activate: bool,
        if_match: Option<u64>,
        quotas: &Quotas,
    ) -> Result<Stored, StoreError> {
        let (actor, name, text, quotas) =
            (actor.clone(), name.to_string(), text.to_string(), *quotas);
        let policy_id = omni::policy::policy_id(text.as_bytes());
        self.write(move |tx| {
            let tenant = actor.tenant.as_str();
            let bytes = text.len() as u64;
            let state = policy_state(tx, tenant, &name)?;
            let mut facts = PutFacts {
                policy: state,
                live_policies: count(
                    tx,
                    "SELECT count(*) FROM policies WHERE tenant = ?1 AND deleted = 0",
                    params![tenant],
                )?,
                tenant_bytes: count(
                    tx,
                    "SELECT COALESCE(max(stored_bytes), 0) FROM tenant_usage WHERE tenant = ?1",
                    params![tenant],
                )?,
                ..PutFacts::default()
            };
            if let Some(p) = state {
                facts.same_text = tx
                    .query_row(
                        "SELECT number FROM revisions WHERE policy = ?1 AND policy_id = ?2",
                        params![p.id, policy_id],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                    .map_err(db)?
                    .map(to_u64);
                let (n, latest): (i64, i64) = tx
                    .query_row(
                        "SELECT count(*), COALESCE(max(number), 0) FROM revisions WHERE policy = ?1",
                        params![p.id],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .map_err(db)?;
                facts.revisions = to_u64(n);
                facts.latest = to_u64(latest);
            }
            let plan = plan_put(&facts, bytes, activate, if_match, &quotas)?;
            let now = now_ms();
            let active = plan.active_after.map(to_i64);
            let pid = match state {
                Some(p) => {
                    if plan.changed() {
                        tx.execute(
                            "UPDATE policies SET active = ?1, deleted = 0, updated_at_ms = ?2 WHERE id = ?3",
                            params![active, now, p.id],
                        )
                        .map_err(db)?;
                    }
                    p.id
                }
                None => {
                    tx.execute(
                        "INSERT INTO policies (tenant, name, active, deleted, updated_at_ms)
                         VALUES (?1, ?2, ?3, 0, ?4)",
                        params![tenant, name, active, now],
                    )
                    .map_err(db)?;
                    tx.last_insert_rowid()
                }
            };
            let revision = if plan.create {
                tx.execute(
                    "INSERT INTO revisions (policy, number, policy_id, text, bytes, created_at_ms, created_by)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![pid, to_i64(plan.number), policy_id, text, to_i64(bytes), now, actor.credential],
                )
                .map_err(db)?;
                tx.execute(
                    "INSERT INTO tenant_usage (tenant, stored_bytes) VALUES (?1, ?2)
                     ON CONFLICT (tenant) DO UPDATE SET stored_bytes = stored_bytes + excluded.stored_bytes",
                    params![tenant, to_i64(bytes)],
                )
                .map_err(db)?;
                RevisionInfo {
                    number: plan.number,
                    policy_id,
                    bytes,
                    created_at_ms: now,
                    created_by: actor.credential.clone(),
                }
            } else {
                revision_info(tx, pid, plan.number)?.0
            };
            let change = if plan.changed() {
                Some(insert_change(
                    tx,
                    &actor,
                    &name,
                    ChangeKind::Store,
                    plan.active_before,
                    Some(plan.number),
                    plan.active_after,
                    now,
                )?)
            } else {
                None
            };
            Ok(Stored {
                revision,
                created: plan.create,
                active: plan.active_after,
                change,
            })
        })
        .await
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<PolicySummary>, StoreError> {
        let tenant = tenant.to_string();
        self.read(move |conn| {
            let mut st = conn
                .prepare_cached(
                    "SELECT p.name, p.active, count(r.number), COALESCE(max(r.number), 0), p.updated_at_ms
                     FROM policies p JOIN revisions r ON r.policy = p.id
                     WHERE p.tenant = ?1 AND p.deleted = 0
                     GROUP BY p.id",
                )
                .map_err(db)?;
            let rows = st
                .query_map(params![tenant], |r| {
                    Ok(PolicySummary {
                        name: r.get(0)?,
                        active: r.get::<_, Option<i64>>(1)?.map(to_u64),
                        revisions: to_u64(r.get(2)?),
                        latest: to_u64(r.get(3)?),
                        updated_at_ms: r.get(4)?,
                    })
                })
                .map_err(db)?;
            let mut out: Vec<PolicySummary> = rows.collect::<Result<_, _>>().map_err(db)?;
            // Byte order, the same in both back-ends whatever the collation.
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
        .await
    }

    pub async fn get(&self, tenant: &str, name: &str) -> Result<PolicyDetail, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            let (id, active, updated_at_ms) = tx
                .query_row(
                    "SELECT id, active, updated_at_ms FROM policies
                     WHERE tenant = ?1 AND name = ?2 AND deleted = 0",
                    params![tenant, name],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, Option<i64>>(1)?,
                            r.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(db)?
                .ok_or(StoreError::PolicyNotFound)?;
            let revisions: Vec<RevisionInfo> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT number, policy_id, bytes, created_at_ms, created_by
                         FROM revisions WHERE policy = ?1 ORDER BY number",
                    )
                    .map_err(db)?;
                let rows = st.query_map(params![id], revision_row).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)?
            };
            Ok(PolicyDetail {
                summary: PolicySummary {
                    name,
                    active: active.map(to_u64),
                    latest: revisions.last().map_or(0, |r| r.number),
                    revisions: revisions.len() as u64,
                    updated_at_ms,
                },
                revisions,
            })
        })
        .await
    }

    pub async fn revision(
        &self,
        tenant: &str,
        name: &str,
        number: u64,
    ) -> Result<(RevisionInfo, String), StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            let p = live_policy(conn, &tenant, &name)?;
            revision_info(conn, p.id, number)
        })
        .await
    }

    pub async fn activate(
        &self,
        actor: &Actor,
        name: &str,
        number: u64,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let (actor, name) = (actor.clone(), name.to_string());
        self.write(move |tx| {
            let p = live_policy(tx, &actor.tenant, &name)?;
            check_if_match(p.active, if_match)?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM revisions WHERE policy = ?1 AND number = ?2",
                    params![p.id, to_i64(number)],
                    |_| Ok(()),
                )
                .optional()
                .map_err(db)?;
            if exists.is_none() {
                return Err(StoreError::RevisionNotFound(number));
            }
            set_active(tx, &actor, &name, p, ChangeKind::Activate, number)
        })
        .await
    }

    pub async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let (actor, name) = (actor.clone(), name.to_string());
        self.write(move |tx| {
            let p = live_policy(tx, &actor.tenant, &name)?;
            check_if_match(p.active, if_match)?;
            let active = p.active.ok_or(StoreError::NothingToRollBack)?;
            let history: Vec<(ChangeKind, Option<u64>)> = {
                let mut st = tx
                    .prepare_cached(
                        "SELECT kind, active_after FROM changes
                         WHERE tenant = ?1 AND name = ?2 ORDER BY seq",
                    )
                    .map_err(db)?;
                let rows = st
                    .query_map(params![actor.tenant, name], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
                    })
                    .map_err(db)?;
                let mut out = Vec::new();
                for row in rows {
                    let (kind, after) = row.map_err(db)?;
                    out.push((ChangeKind::parse(&kind)?, after.map(to_u64)));
                }
                out
            };
            let target = rollback_target(&history, active).ok_or(StoreError::NothingToRollBack)?;
            set_active(tx, &actor, &name, p, ChangeKind::Rollback, target)
        })
        .await
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        let (actor, name) = (actor.clone(), name.to_string());
        self.write(move |tx| {
            let p = live_policy(tx, &actor.tenant, &name)?;
            check_if_match(p.active, if_match)?;
            let now = now_ms();
            tx.execute(
                "UPDATE policies SET deleted = 1, active = NULL, updated_at_ms = ?1 WHERE id = ?2",
                params![now, p.id],
            )
            .map_err(db)?;
            insert_change(
                tx,
                &actor,
                &name,
                ChangeKind::Delete,
                p.active,
                None,
                None,
                now,
            )
        })
        .await
    }

    pub async fn history(&self, tenant: &str, name: &str) -> Result<Vec<Change>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            let tx = conn.transaction().map_err(db)?;
            if policy_state(&tx, &tenant, &name)?.is_none() {
                return Err(StoreError::PolicyNotFound);
            }
            query_changes(
                &tx,
                &format!("{CHANGE_COLUMNS} WHERE tenant = ?1 AND name = ?2 ORDER BY seq"),
                params![tenant, name],
            )
        })
        .await
    }

    pub async fn changes_since(&self, seq: i64) -> Result<Vec<Change>, StoreError> {
        self.read(move |conn| {
            query_changes(
                conn,
                &format!("{CHANGE_COLUMNS} WHERE seq > ?1 ORDER BY seq"),
                params![seq],
            )
        })
        .await
    }

    pub async fn active_policies(&self) -> Result<(Vec<ActivePolicy>, i64), StoreError> {
        self.read(move |conn| {
            // One read transaction: the policies and the seq are one snapshot.
            let tx = conn.transaction().map_err(db)?;
            let policies = {
                let mut st = tx
                    .prepare_cached(&format!("{ACTIVE_COLUMNS} ORDER BY p.tenant, p.name"))
                    .map_err(db)?;
                let rows = st.query_map([], active_row).map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            let seq: i64 = tx
                .query_row("SELECT COALESCE(max(seq), 0) FROM changes", [], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            Ok((policies, seq))
        })
        .await
    }

    pub async fn active_policy(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ActivePolicy>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.read(move |conn| {
            conn.query_row(
                &format!("{ACTIVE_COLUMNS} AND p.tenant = ?1 AND p.name = ?2"),
                params![tenant, name],
                active_row,
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            conn.query_row(
                "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(db)
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT count(*) FROM schema_migrations", [], |_| Ok(()))
                .map_err(db)
        })
        .await
    }
}

const CHANGE_COLUMNS: &str =
    "SELECT seq, tenant, name, kind, from_revision, to_revision, actor, at_ms FROM changes";

const ACTIVE_COLUMNS: &str = "SELECT p.tenant, p.name, r.number, r.policy_id, r.text
     FROM policies p JOIN revisions r ON r.policy = p.id AND r.number = p.active
     WHERE p.deleted = 0 AND p.active IS NOT NULL";

fn active_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActivePolicy> {
    Ok(ActivePolicy {
        tenant: r.get(0)?,
        name: r.get(1)?,
        revision: to_u64(r.get(2)?),
        policy_id: r.get(3)?,
        text: Arc::from(r.get::<_, String>(4)?),
    })
}

fn revision_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevisionInfo> {
    Ok(RevisionInfo {
        number: to_u64(r.get(0)?),
        policy_id: r.get(1)?,
        bytes: to_u64(r.get(2)?),
        created_at_ms: r.get(3)?,
        created_by: r.get(4)?,
    })
}

fn count(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<u64, StoreError> {
    conn.query_row(sql, p, |r| r.get::<_, i64>(0))
        .map(to_u64)
        .map_err(db)
}

fn policy_state(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> Result<Option<PolicyState>, StoreError> {
    conn.query_row(
        "SELECT id, active, deleted FROM policies WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
        |r| {
            Ok(PolicyState {
                id: r.get(0)?,
                active: r.get::<_, Option<i64>>(1)?.map(to_u64),
                deleted: r.get::<_, i64>(2)? != 0,
            })
        },
    )
    .optional()
    .map_err(db)
}

/// The policy if it exists and is not deleted.
fn live_policy(conn: &Connection, tenant: &str, name: &str) -> Result<PolicyState, StoreError> {
    match policy_state(conn, tenant, name)? {
        Some(p) if !p.deleted => Ok(p),
        _ => Err(StoreError::PolicyNotFound),
    }
}

fn revision_info(
    conn: &Connection,
    policy: i64,
    number: u64,
) -> Result<(RevisionInfo, String), StoreError> {
    conn.query_row(
        "SELECT number, policy_id, bytes, created_at_ms, created_by, text
         FROM revisions WHERE policy = ?1 AND number = ?2",
        params![policy, to_i64(number)],
        |r| Ok((revision_row(r)?, r.get::<_, String>(5)?)),
    )
    .optional()
    .map_err(db)?
    .ok_or(StoreError::RevisionNotFound(number))
}

/// Makes `number` active (activate, rollback) and records the change.
fn set_active(
    tx: &Connection,
    actor: &Actor,
    name: &str,
    p: PolicyState,
    kind: ChangeKind,
    number: u64,
) -> Result<Change, StoreError> {
    let now = now_ms();
    tx.execute(
        "UPDATE policies SET active = ?1, updated_at_ms = ?2 WHERE id = ?3",
        params![to_i64(number), now, p.id],
    )
    .map_err(db)?;
    insert_change(
        tx,
        actor,
        name,
        kind,
        p.active,
        Some(number),
        Some(number),
        now,
    )
}

#[allow(clippy::too_many_arguments)]
fn insert_change(
    tx: &Connection,
    actor: &Actor,
    name: &str,
    kind: ChangeKind,
    from: Option<u64>,
    to: Option<u64>,
    active_after: Option<u64>,
    at_ms: i64,
) -> Result<Change, StoreError> {
    tx.execute(
        "INSERT INTO changes (tenant, name, kind, from_revision, to_revision, active_after, actor, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            actor.tenant,
            name,
            kind.as_str(),
            from.map(to_i64),
            to.map(to_i64),
            active_after.map(to_i64),
            actor.credential,
            at_ms
        ],
    )
    .map_err(db)?;
    Ok(Change {
        seq: tx.last_insert_rowid(),
        tenant: actor.tenant.clone(),
        name: name.to_string(),
        kind,
        from,
        to,
        actor: actor.credential.clone(),
        at_ms,
    })
}

fn query_changes(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<Change>, StoreError> {
    let mut st = conn.prepare_cached(sql).map_err(db)?;
    let rows = st
        .query_map(p, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, i64>(7)?,
            ))
        })
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, tenant, name, kind, from, to, actor, at_ms) = row.map_err(db)?;
        out.push(Change {
            seq,
            tenant,
            name,
            kind: ChangeKind::parse(&kind)?,
            from: from.map(to_u64),
            to: to.map(to_u64),
            actor,
            at_ms,
        });
    }
    Ok(out)
}

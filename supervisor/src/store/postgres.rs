//! The PostgreSQL back-end (`store.url`), for several replicas sharing one
//! database: tokio-postgres with a small pool of its own, LISTEN/NOTIFY on
//! [`CHANNEL`] for wake-ups, and reconnection after the server comes back.
//!
//! Every write takes one transaction-scoped advisory lock before it reads
//! anything, so writers are serialized: quotas are exact across replicas,
//! and a change's seq is taken and committed under the lock, so seq order
//! is commit order (a replica reading `seq > last` never skips a change
//! that committed late). Writes are rare next to evaluations; one at a time
//! is plenty. The NOTIFY is sent inside the transaction (PostgreSQL
//! delivers it at commit).
//!
//! A connection that failed or was left in a transaction (an error, a
//! timeout, a cancelled call) is dropped, never reused; one found closed
//! when a call starts is replaced before anything is sent. With the server
//! down, every call fails within `store.connect_timeout_ms`.

use super::{
    check_if_match, now_ms, pending, plan_put, rollback_target, to_i64, to_u64, ActivePolicy,
    Actor, Change, ChangeKind, Migration, PolicyDetail, PolicyState, PolicySummary, PutFacts,
    Quotas, RevisionInfo, StoreError, Stored,
};
use crate::config::StoreSection;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Semaphore, SemaphorePermit};
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Row};

/// The schema, in order; a version is never edited once released.
pub(super) const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "policies",
    sql: include_str!("migrations/postgres/0001_policies.sql"),
}];

/// The LISTEN/NOTIFY channel; the payload is the change's seq.
pub const CHANNEL: &str = "omni_policy_changes";

/// The advisory lock every write (and the migrations) holds until commit.
const WRITE_LOCK: i64 = 0x6f6d_6e69_7374_6f72; // "omnistor"

/// Bound on the statements of one call once connected: a backstop for a
/// network that silently drops packets (a stopped server closes the
/// connections, which fails at once). TCP keepalives cover idle ones.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses and checks `store.url`. The message never repeats the URL (it
/// may carry a password).
pub fn parse_url(url: &str) -> Result<Config, String> {
    let config: Config = url
        .parse()
        .map_err(|e| format!("not a valid PostgreSQL URL ({e})"))?;
    if config.get_hosts().is_empty() {
        return Err("names no host (add one, or `?host=/path/to/socket/dir`)".into());
    }
    if config.get_ssl_mode() == SslMode::Require {
        return Err(
            "sslmode=require needs TLS, which this build does not offer; \
             reach the database over a private network or a unix socket"
                .into(),
        );
    }
    Ok(config)
}

/// `url` with its password replaced (for printing the configuration).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let mut out = url[..scheme_end].to_string();
    let authority = &rest[..auth_end];
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":REDACTED");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[auth_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k == "password" => format!("{k}=REDACTED"),
                    _ => kv.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("postgresql: {e}"))
}

#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    wakeups: watch::Receiver<i64>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The LISTEN connection lives as long as the store.
        self.listener.abort();
    }
}

/// At most `pool_size` connections in use; idle ones are kept for reuse.
struct Pool {
    config: Config,
    connect_timeout: Duration,
    idle: Mutex<Vec<Client>>,
    permits: Semaphore,
}

/// A connection taken from the pool. It goes back on drop only if it is
/// open and outside a transaction.
struct Conn<'a> {
    client: Option<Client>,
    pool: &'a Pool,
    _permit: SemaphorePermit<'a>,
    in_transaction: bool,
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !self.in_transaction && !c.is_closed() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c);
            }
        }
    }
}

impl Conn<'_> {
    fn c(&self) -> Result<&Client, StoreError> {
        self.client
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("no connection".into()))
    }

    /// Commits an `Ok`, rolls back an answer like `Conflict`; a database
    /// failure leaves the connection to be dropped (the server rolls back).
    async fn finish<T>(mut self, out: Result<T, StoreError>) -> Result<T, StoreError> {
        match out {
            Ok(v) => {
                self.c()?.batch_execute("COMMIT").await.map_err(pg)?;
                self.in_transaction = false;
                Ok(v)
            }
            Err(StoreError::Unavailable(m)) => Err(StoreError::Unavailable(m)),
            Err(e) => {
                if self.c()?.batch_execute("ROLLBACK").await.is_ok() {
                    self.in_transaction = false;
                }
                Err(e)
            }
        }
    }
}

impl Pool {
    async fn connect(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls))
                .await
                .map_err(|_| StoreError::Unavailable("connecting to postgresql timed out".into()))?
                .map_err(pg)?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A connection inside a transaction started with `begin`.
    async fn begin(&self, begin: &str) -> Result<Conn<'_>, StoreError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the connection pool is closed".into()))?;
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            idle.retain(|c| !c.is_closed());
            idle.pop()
        };
        let reused = idle.is_some();
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut conn = Conn {
            client: Some(client),
            pool: self,
            _permit: permit,
            in_transaction: true,
        };
        if let Err(e) = conn.c()?.batch_execute(begin).await {
            // An idle connection the server closed since (a restart): the
            // server never saw BEGIN, so a fresh connection is safe.
            if reused && conn.c()?.is_closed() {
                conn.client = Some(self.connect().await?);
                conn.c()?.batch_execute(begin).await.map_err(pg)?;
            } else {
                return Err(pg(e));
            }
        }
        Ok(conn)
    }

    async fn write(&self) -> Result<Conn<'_>, StoreError> {
        self.begin(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))
        .await
    }

    /// A read-only snapshot.
    async fn read(&self) -> Result<Conn<'_>, StoreError> {
        self.begin("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
    }
}

/// A LISTEN connection: its client, the seqs it is notified of, and the
/// latest seq when it started listening (changes before it were missed).
async fn listen(
    config: &Config,
    connect_timeout: Duration,
) -> Result<(Client, mpsc::UnboundedReceiver<i64>, i64), StoreError> {
    let (client, mut connection) = tokio::time::timeout(connect_timeout, config.connect(NoTls))
        .await
        .map_err(|_| StoreError::Unavailable("connecting to postgresql timed out".into()))?
        .map_err(pg)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Polling the messages also drives the client's requests.
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Ok(seq) = n.payload().parse::<i64>() {
                        if tx.send(seq).is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    });
    let setup = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let row = client
            .query_one("SELECT COALESCE(max(seq), 0) FROM changes", &[])
            .await?;
        row.try_get::<_, i64>(0)
    };
    let seq = tokio::time::timeout(QUERY_TIMEOUT, setup)
        .await
        .map_err(|_| StoreError::Unavailable("LISTEN timed out".into()))?
        .map_err(pg)?;
    Ok((client, rx, seq))
}

/// Keeps a LISTEN connection up for the store's life and bumps `wakeups`
/// on each notification, and after each reconnection (to the latest seq,
/// always signalled: a replica re-reads what it may have missed).
async fn listen_loop(
    config: Config,
    connect_timeout: Duration,
    retry: Duration,
    wakeups: watch::Sender<i64>,
    first: (Client, mpsc::UnboundedReceiver<i64>),
) {
    let mut current = Some(first);
    loop {
        let (client, mut rx) = match current.take() {
            Some(c) => c,
            None => match listen(&config, connect_timeout).await {
                Ok((client, rx, seq)) => {
                    tracing::info!("store: listening for policy changes again");
                    wakeups.send_modify(|v| *v = (*v).max(seq));
                    (client, rx)
                }
                Err(_) => {
                    tokio::time::sleep(retry).await;
                    continue;
                }
            },
        };
        while let Some(seq) = rx.recv().await {
            wakeups.send_if_modified(|v| {
                let newer = seq > *v;
                if newer {
                    *v = seq;
                }
                newer
            });
        }
        drop(client);
        tracing::warn!("store: lost the connection that listens for policy changes; reconnecting");
        tokio::time::sleep(retry).await;
    }
}

/// Applies the pending migrations in one transaction, under the write
/// lock (replicas starting together migrate once).
async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let conn = pool.write().await?;
    let out = async {
        let c = conn.c()?;
        c.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version       BIGINT PRIMARY KEY,
                 name          TEXT   NOT NULL,
                 applied_at_ms BIGINT NOT NULL
             )",
        )
        .await
        .map_err(pg)?;
        let applied: Vec<i64> = c
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(pg)?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(pg)?;
        for m in pending(MIGRATIONS, &applied)? {
            c.batch_execute(m.sql).await.map_err(|e| {
                StoreError::Unavailable(format!("migration {} ({}): {e}", m.version, m.name))
            })?;
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &now_ms()],
            )
            .await
            .map_err(pg)?;
        }
        Ok(())
    }
    .await;
    conn.finish(out).await
}

impl PostgresStore {
    pub async fn open(cfg: &StoreSection) -> Result<PostgresStore, StoreError> {
        let mut config =
            parse_url(&cfg.url).map_err(|m| StoreError::Unavailable(format!("store.url: {m}")))?;
        let connect_timeout = Duration::from_millis(cfg.connect_timeout_ms.max(1));
        config
            .connect_timeout(connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("omnid");
        let pool = Pool {
            config: config.clone(),
            connect_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(cfg.pool_size.max(1)),
        };
        tokio::time::timeout(connect_timeout + QUERY_TIMEOUT, migrate(&pool))
            .await
            .map_err(|_| StoreError::Unavailable("migrating the store timed out".into()))??;
        // Listening before open returns: a change committed after it is
        // signalled, one before it is in what the caller reads next.
        let (client, rx, seq) = listen(&config, connect_timeout).await?;
        let (sender, wakeups) = watch::channel(seq);
        let retry = Duration::from_millis(cfg.poll_interval_ms.max(10));
        let listener = tokio::spawn(listen_loop(
            config,
            connect_timeout,
            retry,
            sender,
            (client, rx),
        ));
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                pool,
                wakeups,
                listener,
            }),
        })
    }

    pub fn wakeups(&self) -> watch::Receiver<i64> {
        self.inner.wakeups.clone()
    }

    /// One call, bounded: connecting by the connect timeout, the rest by
    /// [`QUERY_TIMEOUT`].
    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.inner.pool.connect_timeout + QUERY_TIMEOUT, f)
            .await
            .map_err(|_| StoreError::Unavailable("the database did not answer in time".into()))?
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
        self.bounded(async {
            let conn = self.inner.pool.write().await?;
            let out = put_tx(conn.c()?, actor, name, text, activate, if_match, quotas).await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn list(&self, tenant: &str) -> Result<Vec<PolicySummary>, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let rows = conn
                    .c()?
                    .query(
                        "SELECT p.name, p.active, count(r.number), COALESCE(max(r.number), 0), p.updated_at_ms
                         FROM policies p JOIN revisions r ON r.policy = p.id
                         WHERE p.tenant = $1 AND NOT p.deleted
                         GROUP BY p.id",
                        &[&tenant],
                    )
                    .await
                    .map_err(pg)?;
                let mut out = rows
                    .iter()
                    .map(|r| {
                        Ok(PolicySummary {
                            name: r.try_get(0)?,
                            active: r.try_get::<_, Option<i64>>(1)?.map(to_u64),
                            revisions: to_u64(r.try_get(2)?),
                            latest: to_u64(r.try_get(3)?),
                            updated_at_ms: r.try_get(4)?,
                        })
                    })
                    .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                    .map_err(pg)?;
                // Byte order, whatever the database's collation.
                out.sort_by(|a, b| a.name.cmp(&b.name));
                Ok(out)
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn get(&self, tenant: &str, name: &str) -> Result<PolicyDetail, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let c = conn.c()?;
                let row = c
                    .query_opt(
                        "SELECT id, active, updated_at_ms FROM policies
                         WHERE tenant = $1 AND name = $2 AND NOT deleted",
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?
                    .ok_or(StoreError::PolicyNotFound)?;
                let id: i64 = row.try_get(0).map_err(pg)?;
                let active: Option<i64> = row.try_get(1).map_err(pg)?;
                let updated_at_ms: i64 = row.try_get(2).map_err(pg)?;
                let revisions = c
                    .query(
                        "SELECT number, policy_id, bytes, created_at_ms, created_by
                         FROM revisions WHERE policy = $1 ORDER BY number",
                        &[&id],
                    )
                    .await
                    .map_err(pg)?
                    .iter()
                    .map(revision_row)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(pg)?;
                Ok(PolicyDetail {
                    summary: PolicySummary {
                        name: name.to_string(),
                        active: active.map(to_u64),
                        latest: revisions.last().map_or(0, |r| r.number),
                        revisions: revisions.len() as u64,
                        updated_at_ms,
                    },
                    revisions,
                })
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn revision(
        &self,
        tenant: &str,
        name: &str,
        number: u64,
    ) -> Result<(RevisionInfo, String), StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let c = conn.c()?;
                let p = live_policy(c, tenant, name).await?;
                let row = c
                    .query_opt(
                        "SELECT number, policy_id, bytes, created_at_ms, created_by, text
                         FROM revisions WHERE policy = $1 AND number = $2",
                        &[&p.id, &to_i64(number)],
                    )
                    .await
                    .map_err(pg)?
                    .ok_or(StoreError::RevisionNotFound(number))?;
                let info = revision_row(&row).map_err(pg)?;
                let text = text_of(&row, 5)?;
                Ok((info, text))
            }
            .await;
            conn.finish(out).await
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
        self.bounded(async {
            let conn = self.inner.pool.write().await?;
            let out = async {
                let c = conn.c()?;
                let p = live_policy(c, &actor.tenant, name).await?;
                check_if_match(p.active, if_match)?;
                let exists = c
                    .query_opt(
                        "SELECT 1 FROM revisions WHERE policy = $1 AND number = $2",
                        &[&p.id, &to_i64(number)],
                    )
                    .await
                    .map_err(pg)?;
                if exists.is_none() {
                    return Err(StoreError::RevisionNotFound(number));
                }
                set_active(c, actor, name, p, ChangeKind::Activate, number).await
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn rollback(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.write().await?;
            let out = async {
                let c = conn.c()?;
                let p = live_policy(c, &actor.tenant, name).await?;
                check_if_match(p.active, if_match)?;
                let active = p.active.ok_or(StoreError::NothingToRollBack)?;
                let rows = c
                    .query(
                        "SELECT kind, active_after FROM changes
                         WHERE tenant = $1 AND name = $2 ORDER BY seq",
                        &[&actor.tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                let mut history = Vec::with_capacity(rows.len());
                for r in &rows {
                    let kind: String = r.try_get(0).map_err(pg)?;
                    let after: Option<i64> = r.try_get(1).map_err(pg)?;
                    history.push((ChangeKind::parse(&kind)?, after.map(to_u64)));
                }
                let target =
                    rollback_target(&history, active).ok_or(StoreError::NothingToRollBack)?;
                set_active(c, actor, name, p, ChangeKind::Rollback, target).await
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn delete(
        &self,
        actor: &Actor,
        name: &str,
        if_match: Option<u64>,
    ) -> Result<Change, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.write().await?;
            let out = async {
                let c = conn.c()?;
                let p = live_policy(c, &actor.tenant, name).await?;
                check_if_match(p.active, if_match)?;
                let now = now_ms();
                c.execute(
                    "UPDATE policies SET deleted = TRUE, active = NULL, updated_at_ms = $1 WHERE id = $2",
                    &[&now, &p.id],
                )
                .await
                .map_err(pg)?;
                insert_change(c, actor, name, ChangeKind::Delete, p.active, None, None, now).await
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn history(&self, tenant: &str, name: &str) -> Result<Vec<Change>, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let c = conn.c()?;
                if policy_state(c, tenant, name).await?.is_none() {
                    return Err(StoreError::PolicyNotFound);
                }
                let rows = c
                    .query(
                        &format!("{CHANGE_COLUMNS} WHERE tenant = $1 AND name = $2 ORDER BY seq"),
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                rows.iter().map(change_row).collect()
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn changes_since(&self, seq: i64) -> Result<Vec<Change>, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let rows = conn
                    .c()?
                    .query(
                        &format!("{CHANGE_COLUMNS} WHERE seq > $1 ORDER BY seq"),
                        &[&seq],
                    )
                    .await
                    .map_err(pg)?;
                rows.iter().map(change_row).collect()
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn active_policies(&self) -> Result<(Vec<ActivePolicy>, i64), StoreError> {
        self.bounded(async {
            // One REPEATABLE READ snapshot: the policies and the seq agree.
            let conn = self.inner.pool.read().await?;
            let out = async {
                let c = conn.c()?;
                let rows = c
                    .query(&format!("{ACTIVE_COLUMNS} ORDER BY p.tenant, p.name"), &[])
                    .await
                    .map_err(pg)?;
                let policies = rows.iter().map(active_row).collect::<Result<Vec<_>, _>>()?;
                let seq: i64 = c
                    .query_one("SELECT COALESCE(max(seq), 0) FROM changes", &[])
                    .await
                    .map_err(pg)?
                    .try_get(0)
                    .map_err(pg)?;
                Ok((policies, seq))
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn active_policy(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ActivePolicy>, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                let row = conn
                    .c()?
                    .query_opt(
                        &format!("{ACTIVE_COLUMNS} AND p.tenant = $1 AND p.name = $2"),
                        &[&tenant, &name],
                    )
                    .await
                    .map_err(pg)?;
                row.as_ref().map(active_row).transpose()
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = async {
                conn.c()?
                    .query_one(
                        "SELECT COALESCE(max(version), 0) FROM schema_migrations",
                        &[],
                    )
                    .await
                    .map_err(pg)?
                    .try_get(0)
                    .map_err(pg)
            }
            .await;
            conn.finish(out).await
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let conn = self.inner.pool.read().await?;
            let out = conn
                .c()?
                .batch_execute("SELECT count(*) FROM schema_migrations")
                .await
                .map_err(pg);
            conn.finish(out).await
        })
        .await
    }
}

const CHANGE_COLUMNS: &str =
    "SELECT seq, tenant, name, kind, from_revision, to_revision, actor, at_ms FROM changes";

const ACTIVE_COLUMNS: &str = "SELECT p.tenant, p.name, r.number, r.policy_id, r.text
     FROM policies p JOIN revisions r ON r.policy = p.id AND r.number = p.active
     WHERE NOT p.deleted AND p.active IS NOT NULL";

/// The text column (BYTEA holding UTF-8).
fn text_of(row: &Row, i: usize) -> Result<String, StoreError> {
    let bytes: Vec<u8> = row.try_get(i).map_err(pg)?;
    String::from_utf8(bytes)
        .map_err(|_| StoreError::Unavailable("a stored policy text is not UTF-8".into()))
}

fn active_row(r: &Row) -> Result<ActivePolicy, StoreError> {
    Ok(ActivePolicy {
        tenant: r.try_get(0).map_err(pg)?,
        name: r.try_get(1).map_err(pg)?,
        revision: to_u64(r.try_get(2).map_err(pg)?),
        policy_id: r.try_get(3).map_err(pg)?,
        text: Arc::from(text_of(r, 4)?),
    })
}

fn revision_row(r: &Row) -> Result<RevisionInfo, tokio_postgres::Error> {
    Ok(RevisionInfo {
        number: to_u64(r.try_get(0)?),
        policy_id: r.try_get(1)?,
        bytes: to_u64(r.try_get(2)?),
        created_at_ms: r.try_get(3)?,
        created_by: r.try_get(4)?,
    })
}

fn change_row(r: &Row) -> Result<Change, StoreError> {
    let kind: String = r.try_get(3).map_err(pg)?;
    Ok(Change {
        seq: r.try_get(0).map_err(pg)?,
        tenant: r.try_get(1).map_err(pg)?,
        name: r.try_get(2).map_err(pg)?,
        kind: ChangeKind::parse(&kind)?,
        from: r.try_get::<_, Option<i64>>(4).map_err(pg)?.map(to_u64),
        to: r.try_get::<_, Option<i64>>(5).map_err(pg)?.map(to_u64),
        actor: r.try_get(6).map_err(pg)?,
        at_ms: r.try_get(7).map_err(pg)?,
    })
}

async fn count(c: &Client, sql: &str, p: &str) -> Result<u64, StoreError> {
    let row = c.query_one(sql, &[&p]).await.map_err(pg)?;
    Ok(to_u64(row.try_get(0).map_err(pg)?))
}

async fn policy_state(
    c: &Client,
    tenant: &str,
    name: &str,
) -> Result<Option<PolicyState>, StoreError> {
    let row = c
        .query_opt(
            "SELECT id, active, deleted FROM policies WHERE tenant = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await
        .map_err(pg)?;
    row.map(|r| {
        Ok(PolicyState {
            id: r.try_get(0)?,
            active: r.try_get::<_, Option<i64>>(1)?.map(to_u64),
            deleted: r.try_get(2)?,
        })
    })
    .transpose()
    .map_err(pg)
}

async fn live_policy(c: &Client, tenant: &str, name: &str) -> Result<PolicyState, StoreError> {
    match policy_state(c, tenant, name).await? {
        Some(p) if !p.deleted => Ok(p),
        _ => Err(StoreError::PolicyNotFound),
    }
}

async fn put_tx(
    c: &Client,
    actor: &Actor,
    name: &str,
    text: &str,
    activate: bool,
    if_match: Option<u64>,
    quotas: &Quotas,
) -> Result<Stored, StoreError> {
    let tenant = actor.tenant.as_str();
    let policy_id = omni::policy::policy_id(text.as_bytes());
    let bytes = text.len() as u64;
    let state = policy_state(c, tenant, name).await?;
    let mut facts = PutFacts {
        policy: state,
        live_policies: count(
            c,
            "SELECT count(*) FROM policies WHERE tenant = $1 AND NOT deleted",
            tenant,
        )
        .await?,
        tenant_bytes: count(
            c,
            "SELECT COALESCE(max(stored_bytes), 0) FROM tenant_usage WHERE tenant = $1",
            tenant,
        )
        .await?,
        ..PutFacts::default()
    };
    if let Some(p) = state {
        let same = c
            .query_opt(
                "SELECT number FROM revisions WHERE policy = $1 AND policy_id = $2",
                &[&p.id, &policy_id],
            )
            .await
            .map_err(pg)?;
        facts.same_text = same
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()
            .map_err(pg)?
            .map(to_u64);
        let row = c
            .query_one(
                "SELECT count(*), COALESCE(max(number), 0) FROM revisions WHERE policy = $1",
                &[&p.id],
            )
            .await
            .map_err(pg)?;
        facts.revisions = to_u64(row.try_get(0).map_err(pg)?);
        facts.latest = to_u64(row.try_get(1).map_err(pg)?);
    }
    let plan = plan_put(&facts, bytes, activate, if_match, quotas)?;
    let now = now_ms();
    let active = plan.active_after.map(to_i64);
    let pid: i64 = match state {
        Some(p) => {
            if plan.changed() {
                c.execute(
                    "UPDATE policies SET active = $1, deleted = FALSE, updated_at_ms = $2 WHERE id = $3",
                    &[&active, &now, &p.id],
                )
                .await
                .map_err(pg)?;
            }
            p.id
        }
        None => c
            .query_one(
                "INSERT INTO policies (tenant, name, active, deleted, updated_at_ms)
                 VALUES ($1, $2, $3, FALSE, $4) RETURNING id",
                &[&tenant, &name, &active, &now],
            )
            .await
            .map_err(pg)?
            .try_get(0)
            .map_err(pg)?,
    };
    let revision = if plan.create {
        c.execute(
            "INSERT INTO revisions (policy, number, policy_id, text, bytes, created_at_ms, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &pid,
                &to_i64(plan.number),
                &policy_id,
                &text.as_bytes(),
                &to_i64(bytes),
                &now,
                &actor.credential,
            ],
        )
        .await
        .map_err(pg)?;
        c.execute(
            "INSERT INTO tenant_usage (tenant, stored_bytes) VALUES ($1, $2)
             ON CONFLICT (tenant) DO UPDATE SET stored_bytes = tenant_usage.stored_bytes + EXCLUDED.stored_bytes",
            &[&tenant, &to_i64(bytes)],
        )
        .await
        .map_err(pg)?;
        RevisionInfo {
            number: plan.number,
            policy_id,
            bytes,
            created_at_ms: now,
            created_by: actor.credential.clone(),
        }
    } else {
        let row = c
            .query_one(
                "SELECT number, policy_id, bytes, created_at_ms, created_by
                 FROM revisions WHERE policy = $1 AND number = $2",
                &[&pid, &to_i64(plan.number)],
            )
            .await
            .map_err(pg)?;
        revision_row(&row).map_err(pg)?
    };
    let change = if plan.changed() {
        Some(
            insert_change(
                c,
                actor,
                name,
                ChangeKind::Store,
                plan.active_before,
                Some(plan.number),
                plan.active_after,
                now,
            )
            .await?,
        )
    } else {
        None
    };
    Ok(Stored {
        revision,
        created: plan.create,
        active: plan.active_after,
        change,
    })
}

/// Makes `number` active (activate, rollback) and records the change.
async fn set_active(
    c: &Client,
    actor: &Actor,
    name: &str,
    p: PolicyState,
    kind: ChangeKind,
    number: u64,
) -> Result<Change, StoreError> {
    let now = now_ms();
    c.execute(
        "UPDATE policies SET active = $1, updated_at_ms = $2 WHERE id = $3",
        &[&to_i64(number), &now, &p.id],
    )
    .await
    .map_err(pg)?;
    insert_change(
        c,
        actor,
        name,
        kind,
        p.active,
        Some(number),
        Some(number),
        now,
    )
    .await
}

/// Records a change and notifies the other replicas (at commit).
#[allow(clippy::too_many_arguments)]
async fn insert_change(
    c: &Client,
    actor: &Actor,
    name: &str,
    kind: ChangeKind,
    from: Option<u64>,
    to: Option<u64>,
    active_after: Option<u64>,
    at_ms: i64,
) -> Result<Change, StoreError> {
    let seq: i64 = c
        .query_one(
            "INSERT INTO changes (tenant, name, kind, from_revision, to_revision, active_after, actor, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            &[
                &actor.tenant,
                &name,
                &kind.as_str(),
                &from.map(to_i64),
                &to.map(to_i64),
                &active_after.map(to_i64),
                &actor.credential,
                &at_ms,
            ],
        )
        .await
        .map_err(pg)?
        .try_get(0)
        .map_err(pg)?;
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &seq.to_string()])
        .await
        .map_err(pg)?;
    Ok(Change {
        seq,
        tenant: actor.tenant.clone(),
        name: name.to_string(),
        kind,
        from,
        to,
        actor: actor.credential.clone(),
        at_ms,
    })
}

//! The store's tests: one set of test bodies run against a real SQLite file
//! (a test each, in a temporary directory) and a real PostgreSQL (a
//! throwaway cluster, [`super::testing::PgCluster`], a database per body),
//! plus what only PostgreSQL does: NOTIFY wake-ups and outages.

use super::testing::PgCluster;
use super::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use StoreError::*;

const Q: Quotas = Quotas {
    max_policies: 100,
    max_revisions: 100,
    max_bytes: 1 << 20,
};

fn actor(tenant: &str, credential: &str) -> Actor {
    Actor {
        tenant: tenant.into(),
        credential: credential.into(),
    }
}

/// A distinct policy text (the store does not check texts; the API does).
fn text(i: usize) -> String {
    format!("INTENT: policy {i}\nRULE:\n- IF Battery < {i}% THEN ReturnToHome\n")
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "omnid-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn sqlite(&self) -> StoreSection {
        StoreSection {
            path: self.0.join("store.db").display().to_string(),
            ..StoreSection::default()
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pg_cfg(pg: &PgCluster, database: &str) -> StoreSection {
    StoreSection {
        url: pg.create_database(database),
        connect_timeout_ms: 2_000,
        ..StoreSection::default()
    }
}

async fn open(cfg: &StoreSection) -> Store {
    Store::open(cfg)
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// Runs each body against SQLite (one test each) and PostgreSQL (one
/// cluster for all, a database each: starting a cluster is the slow part).
macro_rules! both_backends {
    ($($body:ident),* $(,)?) => {
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $body() {
                    let dir = super::TempDir::new(stringify!($body));
                    super::$body(dir.sqlite()).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_backend() {
            let Some(pg) = PgCluster::start() else { return };
            $(
                eprintln!("postgres: {}", stringify!($body));
                $body(pg_cfg(&pg, stringify!($body))).await;
            )*
        }
    };
}

both_backends!(
    every_operation,
    same_text_is_deduplicated,
    numbers_are_never_reused,
    soft_delete_and_revive,
    rollback_walks_the_history,
    if_match_conflicts,
    quotas_of_each_kind,
    changes_since_is_in_commit_order,
    reopening_keeps_everything,
    migrations_are_idempotent,
    concurrent_puts_all_land,
    tenants_are_separate,
);

async fn every_operation(cfg: StoreSection) {
    let s = open(&cfg).await;
    s.ping().await.unwrap();
    assert_eq!(s.wakeups().is_some(), s.backend() == "postgres");
    assert_eq!(s.list("acme").await.unwrap(), vec![]);
    assert_eq!(s.get("acme", "p").await, Err(PolicyNotFound));
    assert_eq!(s.active_policies().await.unwrap(), (vec![], 0));

    let alice = actor("acme", "alice");
    // Not ASCII, with a NUL: any UTF-8 text round-trips byte for byte.
    let t1 = format!("{}# ünïcode \u{0} ✓\n", text(1));
    let st = s.put(&alice, "p", &t1, true, None, &Q).await.unwrap();
    assert!(st.created);
    assert_eq!(st.revision.number, 1);
    assert_eq!(
        st.revision.policy_id,
        omni::policy::policy_id(t1.as_bytes())
    );
    assert_eq!(st.revision.bytes, t1.len() as u64);
    assert_eq!(st.revision.created_by, "alice");
    assert!(st.revision.created_at_ms > 1_600_000_000_000);
    assert_eq!(st.active, Some(1));
    let c1 = st.change.clone().unwrap();
    assert_eq!(
        (
            c1.kind,
            c1.from,
            c1.to,
            c1.tenant.as_str(),
            c1.name.as_str(),
            c1.actor.as_str()
        ),
        (ChangeKind::Store, None, Some(1), "acme", "p", "alice")
    );

    let st2 = s.put(&alice, "p", &text(2), false, None, &Q).await.unwrap();
    assert_eq!(
        (st2.revision.number, st2.created, st2.active),
        (2, true, Some(1))
    );
    let c2 = st2.change.unwrap();
    assert_eq!(
        (c2.kind, c2.from, c2.to),
        (ChangeKind::Store, Some(1), Some(2))
    );
    assert!(c2.seq > c1.seq);

    let list = s.list("acme").await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(
        (
            list[0].name.as_str(),
            list[0].active,
            list[0].latest,
            list[0].revisions
        ),
        ("p", Some(1), 2, 2)
    );
    let detail = s.get("acme", "p").await.unwrap();
    assert_eq!(detail.summary, list[0]);
    assert_eq!(detail.revisions[0], st.revision);
    assert_eq!(detail.revisions[1], st2.revision);

    let (info, body) = s.revision("acme", "p", 1).await.unwrap();
    assert_eq!((info, body), (st.revision.clone(), t1.clone()));
    assert_eq!(s.revision("acme", "p", 3).await, Err(RevisionNotFound(3)));
    assert_eq!(s.revision("acme", "q", 1).await, Err(PolicyNotFound));

    let bob = actor("acme", "bob");
    let c3 = s.activate(&bob, "p", 2, Some(1)).await.unwrap();
    assert_eq!(
        (c3.kind, c3.from, c3.to, c3.actor.as_str()),
        (ChangeKind::Activate, Some(1), Some(2), "bob")
    );
    let ap = s.active_policy("acme", "p").await.unwrap().unwrap();
    assert_eq!(
        (ap.tenant.as_str(), ap.name.as_str(), ap.revision, &*ap.text),
        ("acme", "p", 2, text(2).as_str())
    );
    assert_eq!(ap.policy_id, omni::policy::policy_id(text(2).as_bytes()));
    assert_eq!(
        s.active_policies().await.unwrap(),
        (vec![ap.clone()], c3.seq)
    );
    assert_eq!(s.active_policy("acme", "q").await.unwrap(), None);

    let c4 = s.rollback(&bob, "p", Some(2)).await.unwrap();
    assert_eq!(
        (c4.kind, c4.from, c4.to),
        (ChangeKind::Rollback, Some(2), Some(1))
    );
    let c5 = s.delete(&alice, "p", Some(1)).await.unwrap();
    assert_eq!(
        (c5.kind, c5.from, c5.to),
        (ChangeKind::Delete, Some(1), None)
    );

    let history = s.history("acme", "p").await.unwrap();
    assert_eq!(history, vec![c1, c2, c3, c4, c5]);
    assert_eq!(s.changes_since(0).await.unwrap(), history);
    assert_eq!(s.active_policies().await.unwrap().0, vec![]);
    assert_eq!(s.schema_version().await.unwrap(), 1);
}

async fn same_text_is_deduplicated(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ci");
    let st = s.put(&a, "p", &text(1), false, None, &Q).await.unwrap();
    assert_eq!((st.revision.number, st.created, st.active), (1, true, None));
    assert!(st.change.is_some());
    // Again, not activating: nothing changes, nothing is recorded.
    let again = s.put(&a, "p", &text(1), false, None, &Q).await.unwrap();
    assert_eq!(
        (again.revision.clone(), again.created, again.active),
        (st.revision.clone(), false, None)
    );
    assert_eq!(again.change, None);
    // Again, activating: the existing revision becomes active (a change).
    let act = s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    assert_eq!(
        (act.revision.number, act.created, act.active),
        (1, false, Some(1))
    );
    let c = act.change.unwrap();
    assert_eq!((c.kind, c.from, c.to), (ChangeKind::Store, None, Some(1)));
    assert_eq!(
        s.put(&a, "p", &text(1), true, None, &Q)
            .await
            .unwrap()
            .change,
        None
    );
    assert_eq!(s.history("acme", "p").await.unwrap().len(), 2);
    // An older text while another is active: found, and re-activated.
    s.put(&a, "p", &text(2), true, None, &Q).await.unwrap();
    let old = s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    assert_eq!(
        (old.revision.number, old.created, old.active),
        (1, false, Some(1))
    );
    let c = old.change.unwrap();
    assert_eq!((c.from, c.to), (Some(2), Some(1)));
    assert_eq!(s.get("acme", "p").await.unwrap().revisions.len(), 2);
    // Per policy: the same text under another name is a new revision there.
    let q = s.put(&a, "q", &text(1), true, None, &Q).await.unwrap();
    assert_eq!((q.revision.number, q.created), (1, true));
    // Whitespace matters: the id is of the exact bytes.
    let ws = s
        .put(&a, "p", &format!("{} ", text(1)), true, None, &Q)
        .await
        .unwrap();
    assert_eq!((ws.revision.number, ws.created), (3, true));
}

async fn numbers_are_never_reused(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ci");
    for i in 1..=3 {
        let st = s.put(&a, "p", &text(i), true, None, &Q).await.unwrap();
        assert_eq!(st.revision.number, i as u64);
    }
    s.delete(&a, "p", Some(3)).await.unwrap();
    let st = s.put(&a, "p", &text(4), true, None, &Q).await.unwrap();
    assert_eq!(
        (st.revision.number, st.created, st.active),
        (4, true, Some(4))
    );
    let numbers: Vec<u64> = s
        .get("acme", "p")
        .await
        .unwrap()
        .revisions
        .iter()
        .map(|r| r.number)
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    let st = s.put(&a, "p", &text(2), false, None, &Q).await.unwrap();
    assert_eq!((st.revision.number, st.created), (2, false));
    assert_eq!(
        s.put(&a, "p", &text(5), false, None, &Q)
            .await
            .unwrap()
            .revision
            .number,
        5
    );
}

async fn soft_delete_and_revive(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ops");
    s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    s.put(&a, "p", &text(2), true, None, &Q).await.unwrap();
    s.put(&a, "keep", &text(9), true, None, &Q).await.unwrap();
    let d = s.delete(&a, "p", None).await.unwrap();
    assert_eq!((d.kind, d.from, d.to), (ChangeKind::Delete, Some(2), None));

    assert_eq!(s.get("acme", "p").await, Err(PolicyNotFound));
    let names: Vec<String> = s
        .list("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["keep"]);
    assert_eq!(s.revision("acme", "p", 1).await, Err(PolicyNotFound));
    assert_eq!(s.active_policy("acme", "p").await.unwrap(), None);
    let (active, _) = s.active_policies().await.unwrap();
    assert_eq!(
        active.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["keep"]
    );
    assert_eq!(s.delete(&a, "p", None).await, Err(PolicyNotFound));
    assert_eq!(s.activate(&a, "p", 1, None).await, Err(PolicyNotFound));
    assert_eq!(s.rollback(&a, "p", None).await, Err(PolicyNotFound));
    // The history stays (who deleted it is part of it).
    let h = s.history("acme", "p").await.unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(h[2], d);
    assert_eq!(s.history("acme", "never").await, Err(PolicyNotFound));

    // A put of an existing text revives the policy with that revision.
    let st = s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    assert_eq!(
        (st.revision.number, st.created, st.active),
        (1, false, Some(1))
    );
    let c = st.change.unwrap();
    assert_eq!((c.kind, c.from, c.to), (ChangeKind::Store, None, Some(1)));
    let detail = s.get("acme", "p").await.unwrap();
    assert_eq!(
        (detail.summary.active, detail.revisions.len()),
        (Some(1), 2)
    );
    // Revived without activating: listed, nothing active.
    s.delete(&a, "p", Some(1)).await.unwrap();
    let st = s.put(&a, "p", &text(2), false, None, &Q).await.unwrap();
    assert_eq!((st.created, st.active), (false, None));
    assert!(st.change.is_some(), "a revive is a change");
    let p = s
        .list("acme")
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.name == "p")
        .unwrap();
    assert_eq!((p.active, p.latest, p.revisions), (None, 2, 2));
    assert_eq!(s.active_policy("acme", "p").await.unwrap(), None);
}

async fn rollback_walks_the_history(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ops");
    for i in 1..=3 {
        s.put(&a, "p", &text(i), true, None, &Q).await.unwrap();
    }
    let r = s.rollback(&a, "p", Some(3)).await.unwrap();
    assert_eq!(
        (r.kind, r.from, r.to),
        (ChangeKind::Rollback, Some(3), Some(2))
    );
    let r = s.rollback(&a, "p", None).await.unwrap();
    assert_eq!((r.from, r.to), (Some(2), Some(1)));
    assert_eq!(s.rollback(&a, "p", None).await, Err(NothingToRollBack));
    assert_eq!(s.get("acme", "p").await.unwrap().summary.active, Some(1));
    // After an activate, a rollback returns to what was active before it.
    s.activate(&a, "p", 3, Some(1)).await.unwrap();
    let r = s.rollback(&a, "p", Some(3)).await.unwrap();
    assert_eq!((r.from, r.to), (Some(3), Some(1)));
    // A stored but not activated revision is not a step.
    s.put(&a, "p", &text(4), false, None, &Q).await.unwrap();
    assert_eq!(s.rollback(&a, "p", None).await, Err(NothingToRollBack));
    // Across a delete and revive: back to what was active before.
    s.activate(&a, "p", 4, None).await.unwrap();
    s.delete(&a, "p", Some(4)).await.unwrap();
    s.put(&a, "p", &text(2), true, Some(0), &Q).await.unwrap();
    let r = s.rollback(&a, "p", Some(2)).await.unwrap();
    assert_eq!((r.from, r.to), (Some(2), Some(4)));
    // A stale If-Match is a conflict, and nothing changes.
    assert_eq!(
        s.rollback(&a, "p", Some(2)).await,
        Err(Conflict { active: Some(4) })
    );
    assert_eq!(s.get("acme", "p").await.unwrap().summary.active, Some(4));
    // Never activated: nothing to roll back to.
    s.put(&a, "fresh", &text(1), false, None, &Q).await.unwrap();
    assert_eq!(s.rollback(&a, "fresh", None).await, Err(NothingToRollBack));
    let kinds: Vec<ChangeKind> = s
        .history("acme", "p")
        .await
        .unwrap()
        .iter()
        .map(|c| c.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == ChangeKind::Rollback).count(),
        4,
        "{kinds:?}"
    );
}

async fn if_match_conflicts(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ops");
    s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    assert_eq!(
        s.put(&a, "p", &text(2), true, Some(2), &Q).await,
        Err(Conflict { active: Some(1) })
    );
    assert_eq!(
        s.get("acme", "p").await.unwrap().revisions.len(),
        1,
        "nothing stored"
    );
    assert_eq!(
        s.history("acme", "p").await.unwrap().len(),
        1,
        "nothing recorded"
    );
    let st = s.put(&a, "p", &text(2), true, Some(1), &Q).await.unwrap();
    assert_eq!(st.active, Some(2));
    assert_eq!(
        s.activate(&a, "p", 1, Some(1)).await,
        Err(Conflict { active: Some(2) })
    );
    assert_eq!(
        s.activate(&a, "p", 9, Some(5)).await,
        Err(Conflict { active: Some(2) })
    );
    assert_eq!(
        s.activate(&a, "p", 9, Some(2)).await,
        Err(RevisionNotFound(9))
    );
    s.activate(&a, "p", 1, Some(2)).await.unwrap();
    assert_eq!(
        s.delete(&a, "p", Some(2)).await,
        Err(Conflict { active: Some(1) })
    );
    assert_eq!(s.get("acme", "p").await.unwrap().summary.active, Some(1));
    // Some(0): "nothing is active".
    s.put(&a, "q", &text(1), false, Some(0), &Q).await.unwrap();
    s.put(&a, "q", &text(1), true, Some(0), &Q).await.unwrap();
    assert_eq!(
        s.put(&a, "q", &text(2), true, Some(0), &Q).await,
        Err(Conflict { active: Some(1) })
    );
    // A precondition on a policy that does not exist creates nothing.
    assert_eq!(
        s.put(&a, "r", &text(1), true, Some(3), &Q).await,
        Err(Conflict { active: None })
    );
    assert_eq!(s.get("acme", "r").await, Err(PolicyNotFound));
}

async fn quotas_of_each_kind(cfg: StoreSection) {
    let s = open(&cfg).await;
    let a = actor("acme", "ops");
    let q = Quotas {
        max_policies: 2,
        max_revisions: 3,
        max_bytes: 100_000,
    };
    // Policies: live ones count; a revive counts as new.
    s.put(&a, "a", &text(1), true, None, &q).await.unwrap();
    s.put(&a, "b", &text(1), true, None, &q).await.unwrap();
    let full = Err(Quota {
        kind: QuotaKind::Policies,
        limit: 2,
    });
    assert_eq!(s.put(&a, "c", &text(1), true, None, &q).await, full);
    assert_eq!(s.list("acme").await.unwrap().len(), 2);
    s.put(&a, "a", &text(1), true, None, &q).await.unwrap();
    s.delete(&a, "b", None).await.unwrap();
    s.put(&a, "c", &text(1), true, None, &q).await.unwrap();
    assert_eq!(s.put(&a, "b", &text(1), true, None, &q).await, full);
    // Revisions per policy; the same text again is not a new one.
    s.put(&a, "a", &text(2), true, None, &q).await.unwrap();
    s.put(&a, "a", &text(3), true, None, &q).await.unwrap();
    assert_eq!(
        s.put(&a, "a", &text(4), true, None, &q).await,
        Err(Quota {
            kind: QuotaKind::Revisions,
            limit: 3
        })
    );
    s.put(&a, "a", &text(2), true, None, &q).await.unwrap();
    assert_eq!(s.get("acme", "a").await.unwrap().revisions.len(), 3);
    // Bytes: all of the tenant's stored texts, deleted policies' too.
    let t = actor("tiny", "ops");
    let qb = Quotas {
        max_policies: 10,
        max_revisions: 10,
        max_bytes: 100,
    };
    s.put(&t, "x", &"a".repeat(60), true, None, &qb)
        .await
        .unwrap();
    let over = Err(Quota {
        kind: QuotaKind::Bytes,
        limit: 100,
    });
    assert_eq!(s.put(&t, "x", &"b".repeat(50), true, None, &qb).await, over);
    assert_eq!(s.put(&t, "y", &"b".repeat(50), true, None, &qb).await, over);
    s.put(&t, "y", &"b".repeat(40), true, None, &qb)
        .await
        .unwrap();
    s.delete(&t, "x", None).await.unwrap();
    assert_eq!(s.put(&t, "z", "c", true, None, &qb).await, over);
    assert_eq!(s.get("tiny", "z").await, Err(PolicyNotFound));
    // Another tenant's usage is its own.
    s.put(&actor("other", "ops"), "a", &text(1), true, None, &qb)
        .await
        .unwrap();
}

async fn changes_since_is_in_commit_order(cfg: StoreSection) {
    let s = open(&cfg).await;
    let (a, b) = (actor("acme", "x"), actor("beta", "y"));
    let mut seqs = Vec::new();
    for i in 1..=3 {
        seqs.push(
            s.put(&a, "p", &text(i), true, None, &Q)
                .await
                .unwrap()
                .change
                .unwrap()
                .seq,
        );
        seqs.push(
            s.put(&b, "p", &text(i), i != 2, None, &Q)
                .await
                .unwrap()
                .change
                .unwrap()
                .seq,
        );
        seqs.push(
            s.put(&a, "q", &text(i), true, None, &Q)
                .await
                .unwrap()
                .change
                .unwrap()
                .seq,
        );
    }
    seqs.push(s.rollback(&a, "p", None).await.unwrap().seq);
    seqs.push(s.activate(&b, "p", 2, None).await.unwrap().seq);
    seqs.push(s.delete(&a, "q", None).await.unwrap().seq);
    let all = s.changes_since(0).await.unwrap();
    assert_eq!(all.iter().map(|c| c.seq).collect::<Vec<_>>(), seqs);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let mid = seqs[5];
    let tail = s.changes_since(mid).await.unwrap();
    assert_eq!(tail, all[6..].to_vec());
    assert_eq!(
        s.changes_since(*seqs.last().unwrap()).await.unwrap(),
        vec![]
    );
    for (tenant, name) in [("acme", "p"), ("beta", "p"), ("acme", "q")] {
        let h = s.history(tenant, name).await.unwrap();
        let filtered: Vec<Change> = all
            .iter()
            .filter(|c| c.tenant == tenant && c.name == name)
            .cloned()
            .collect();
        assert_eq!(h, filtered);
    }
    assert_eq!(s.active_policies().await.unwrap().1, *seqs.last().unwrap());
}

async fn reopening_keeps_everything(cfg: StoreSection) {
    let a = actor("acme", "ops");
    let before = {
        let s = open(&cfg).await;
        for i in 1..=3 {
            s.put(&a, "p", &text(i), true, None, &Q).await.unwrap();
        }
        s.rollback(&a, "p", None).await.unwrap();
        s.put(&a, "gone", &text(7), true, None, &Q).await.unwrap();
        s.delete(&a, "gone", None).await.unwrap();
        (
            s.get("acme", "p").await.unwrap(),
            s.list("acme").await.unwrap(),
            s.changes_since(0).await.unwrap(),
            s.active_policies().await.unwrap(),
        )
    };
    let s = open(&cfg).await;
    assert_eq!(s.get("acme", "p").await.unwrap(), before.0);
    assert_eq!(s.list("acme").await.unwrap(), before.1);
    assert_eq!(s.changes_since(0).await.unwrap(), before.2);
    assert_eq!(s.active_policies().await.unwrap(), before.3);
    assert_eq!(s.revision("acme", "p", 3).await.unwrap().1, text(3));
    // Numbering and the rollback stack carry on.
    assert_eq!(
        s.put(&a, "p", &text(4), true, None, &Q)
            .await
            .unwrap()
            .revision
            .number,
        4
    );
    assert_eq!(s.rollback(&a, "p", None).await.unwrap().to, Some(2));
    let st = s.put(&a, "gone", &text(8), true, None, &Q).await.unwrap();
    assert_eq!(st.revision.number, 2);
}

async fn migrations_are_idempotent(cfg: StoreSection) {
    let first = open(&cfg).await;
    let known = match &first {
        Store::Sqlite(_) => sqlite::MIGRATIONS,
        Store::Postgres(_) => postgres::MIGRATIONS,
    }
    .last()
    .map(|m| m.version)
    .unwrap();
    assert_eq!(first.schema_version().await.unwrap(), known);
    first
        .put(&actor("acme", "ops"), "p", &text(1), true, None, &Q)
        .await
        .unwrap();
    // Opened again while the first is open, and twice at once.
    let (second, third) = tokio::join!(Store::open(&cfg), Store::open(&cfg));
    for s in [second.unwrap(), third.unwrap()] {
        assert_eq!(s.schema_version().await.unwrap(), known);
        assert_eq!(s.get("acme", "p").await.unwrap().revisions.len(), 1);
    }
    // A store newer than this build is refused, not written to.
    assert!(pending(&[], &[known]).is_err());
    assert!(pending(&[], &[]).unwrap().is_empty());
}

async fn concurrent_puts_all_land(cfg: StoreSection) {
    let s = open(&cfg).await;
    let n = 40;
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let a = actor("acme", &format!("writer{i}"));
            let hot = s.put(&a, "hot", &text(i), true, None, &Q).await;
            let own = s
                .put(&a, &format!("own{i}"), &text(i), true, None, &Q)
                .await;
            (hot, own)
        }));
    }
    let mut numbers = Vec::new();
    let mut seqs = Vec::new();
    for t in tasks {
        let (hot, own) = t.await.unwrap();
        let (hot, own) = (hot.unwrap(), own.unwrap());
        assert!(hot.created && own.created);
        assert_eq!(own.revision.number, 1);
        numbers.push(hot.revision.number);
        seqs.push(hot.change.unwrap().seq);
        seqs.push(own.change.unwrap().seq);
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=n as u64).collect::<Vec<_>>());
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 2 * n);
    let detail = s.get("acme", "hot").await.unwrap();
    assert_eq!(detail.revisions.len(), n);
    // Each stored text is the one its writer sent.
    for r in &detail.revisions {
        let (_, body) = s.revision("acme", "hot", r.number).await.unwrap();
        assert_eq!(omni::policy::policy_id(body.as_bytes()), r.policy_id);
        assert_eq!(text(r.created_by["writer".len()..].parse().unwrap()), body);
    }
    assert_eq!(s.list("acme").await.unwrap().len(), n + 1);
    assert_eq!(s.changes_since(0).await.unwrap().len(), 2 * n);
}

async fn tenants_are_separate(cfg: StoreSection) {
    let s = open(&cfg).await;
    let (a, b) = (actor("acme", "ops"), actor("beta", "ops"));
    s.put(&a, "p", &text(1), true, None, &Q).await.unwrap();
    assert_eq!(s.get("beta", "p").await, Err(PolicyNotFound));
    assert_eq!(s.list("beta").await.unwrap(), vec![]);
    assert_eq!(s.revision("beta", "p", 1).await, Err(PolicyNotFound));
    assert_eq!(s.activate(&b, "p", 1, None).await, Err(PolicyNotFound));
    assert_eq!(s.rollback(&b, "p", None).await, Err(PolicyNotFound));
    assert_eq!(s.delete(&b, "p", None).await, Err(PolicyNotFound));
    assert_eq!(s.history("beta", "p").await, Err(PolicyNotFound));
    assert_eq!(s.active_policy("beta", "p").await.unwrap(), None);
    // The same name in another tenant is another policy.
    let st = s.put(&b, "p", &text(2), true, None, &Q).await.unwrap();
    assert_eq!((st.revision.number, st.created), (1, true));
    assert_eq!(
        &*s.active_policy("acme", "p").await.unwrap().unwrap().text,
        text(1)
    );
    assert_eq!(
        &*s.active_policy("beta", "p").await.unwrap().unwrap().text,
        text(2)
    );
}

// ---- SQLite only --------------------------------------------------------

#[tokio::test]
async fn sqlite_file_is_durable_wal() {
    let dir = TempDir::new("wal");
    let cfg = dir.sqlite();
    let s = open(&cfg).await;
    s.put(&actor("acme", "ops"), "p", &text(1), true, None, &Q)
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: i64 = conn
        .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, sqlite::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn sqlite_unopenable_file_is_unavailable() {
    let dir = TempDir::new("missing");
    let cfg = StoreSection {
        path: dir.0.join("no/such/dir/store.db").display().to_string(),
        ..StoreSection::default()
    };
    match Store::open(&cfg).await {
        Err(Unavailable(m)) => assert!(m.contains("store.db"), "{m}"),
        Err(e) => panic!("unexpected {e:?}"),
        Ok(_) => panic!("opened a file in a missing directory"),
    }
}

// ---- PostgreSQL only ----------------------------------------------------

/// Waits until the receiver has seen `seq` (or more).
async fn wait_for(rx: &mut tokio::sync::watch::Receiver<i64>, seq: i64, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            if *rx.borrow_and_update() >= seq {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_wakes_another_store() {
    let Some(pg) = PgCluster::start() else { return };
    let cfg = pg_cfg(&pg, "notify");
    let (a, b) = (open(&cfg).await, open(&cfg).await);
    let mut rx = b.wakeups().unwrap();
    let ops = actor("acme", "ops");
    // Store, store, roll back, store: the active revision b reads each time.
    for (round, expected) in [1u64, 2, 1, 3].into_iter().enumerate() {
        let started = Instant::now();
        let seq = if round == 2 {
            a.rollback(&ops, "p", None).await.unwrap().seq
        } else {
            a.put(&ops, "p", &text(expected as usize), true, None, &Q)
                .await
                .unwrap()
                .change
                .unwrap()
                .seq
        };
        assert!(
            wait_for(&mut rx, seq, Duration::from_secs(1)).await,
            "round {round}: no wake-up within 1 s (saw {})",
            *rx.borrow()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        let active = b.active_policy("acme", "p").await.unwrap().unwrap();
        assert_eq!(active.revision, expected, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_and_recovers() {
    let Some(mut pg) = PgCluster::start() else {
        return;
    };
    let cfg = StoreSection {
        connect_timeout_ms: 1_000,
        poll_interval_ms: 100,
        ..pg_cfg(&pg, "outage")
    };
    let s = open(&cfg).await;
    let ops = actor("acme", "ops");
    let mut acknowledged = Vec::new();
    for i in 1..=3 {
        acknowledged.push(
            s.put(&ops, "p", &text(i), true, None, &Q)
                .await
                .unwrap()
                .revision,
        );
    }

    pg.stop();
    // Every call fails, quickly, as Unavailable (twice: the first finds the
    // pooled connections closed, the second connects afresh).
    let bound = Duration::from_millis(cfg.connect_timeout_ms + 1_000);
    for round in 0..2 {
        macro_rules! down {
            ($call:expr) => {{
                let started = Instant::now();
                let r = $call.await;
                assert!(
                    matches!(r, Err(Unavailable(_))),
                    "round {round}: {}: {r:?}",
                    stringify!($call)
                );
                assert!(
                    started.elapsed() < bound,
                    "{} took {:?}",
                    stringify!($call),
                    started.elapsed()
                );
            }};
        }
        down!(s.ping());
        down!(s.put(&ops, "p", &text(9), true, None, &Q));
        down!(s.list("acme"));
        down!(s.get("acme", "p"));
        down!(s.revision("acme", "p", 1));
        down!(s.activate(&ops, "p", 1, None));
        down!(s.rollback(&ops, "p", None));
        down!(s.delete(&ops, "p", None));
        down!(s.history("acme", "p"));
        down!(s.changes_since(0));
        down!(s.active_policies());
        down!(s.active_policy("acme", "p"));
    }

    pg.start_again();
    // The same Store works again at once, and lost nothing acknowledged.
    s.ping().await.unwrap();
    let detail = s.get("acme", "p").await.unwrap();
    assert_eq!(detail.revisions, acknowledged);
    assert_eq!(detail.summary.active, Some(3));
    let st = s.put(&ops, "p", &text(4), true, Some(3), &Q).await.unwrap();
    assert_eq!(st.revision.number, 4);
    // The LISTEN connection comes back too (retried every poll interval).
    let mut rx = s.wakeups().unwrap();
    let seq = st.change.unwrap().seq;
    assert!(
        wait_for(&mut rx, seq, Duration::from_secs(5)).await,
        "no wake-up after the restart"
    );
    let other = open(&cfg).await;
    let st = other
        .put(&ops, "p", &text(5), true, None, &Q)
        .await
        .unwrap();
    assert!(wait_for(&mut rx, st.change.unwrap().seq, Duration::from_secs(1)).await);
}

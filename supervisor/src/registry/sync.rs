//! The task that keeps a replica's registry in step with the store: it asks
//! for the changes after the last one it applied on every wake-up
//! (PostgreSQL's NOTIFY, so another replica's change is served within
//! milliseconds) and every `store.poll_interval_ms` (SQLite, and the
//! backstop when notifications are lost), and re-reads the active revision
//! of each policy a change touched. A store that does not answer leaves the
//! map as it is (the last good copy) and is asked again next time, from
//! the same change: nothing is skipped.

use super::{served_of, Known, Registry};
use crate::app::App;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Follows the store until the runtime stops.
pub async fn run(app: Arc<App>) {
    let registry = &app.registry;
    let mut wakeups = registry.store.wakeups();
    loop {
        let poll = Duration::from_millis(app.settings().config.store.poll_interval_ms.max(10));
        match wakeups.as_mut() {
            Some(rx) => {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            // The listener is gone for good: poll only.
                            wakeups = None;
                        }
                    }
                    _ = tokio::time::sleep(poll) => {}
                }
            }
            None => tokio::time::sleep(poll).await,
        }
        registry.sync_once().await;
    }
}

impl Registry {
    /// Applies the changes committed since the last one applied. Returns
    /// whether the store answered every question.
    pub async fn sync_once(&self) -> bool {
        let since = self.synced_seq.load(Ordering::Acquire);
        let changes = match self.call(self.store.changes_since(since)).await {
            Ok(c) => c,
            Err(_) => return false,
        };
        let Some(last) = changes.last().map(|c| c.seq) else {
            return true;
        };
        // The latest change of each name: one read per policy touched.
        let mut touched: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for c in &changes {
            let seq = touched.entry((&c.tenant, &c.name)).or_insert(c.seq);
            *seq = (*seq).max(c.seq);
        }
        for ((tenant, name), seq) in touched {
            // Already served as of this change (made through this replica).
            if self.slot_seq(tenant, name).is_some_and(|s| s >= seq) {
                continue;
            }
            match self.call(self.store.active_policy(tenant, name)).await {
                Ok(p) => self.apply(tenant, name, seq, p.map(served_of), Known::Read),
                // Asked again from `since` next time.
                Err(_) => return false,
            }
        }
        self.synced_seq.fetch_max(last, Ordering::AcqRel);
        true
    }

    /// The seq of the change the map reflects for this name.
    fn slot_seq(&self, tenant: &str, name: &str) -> Option<i64> {
        crate::lock::read(&self.map)
            .get(tenant)
            .and_then(|t| t.get(name))
            .map(|s| s.seq)
    }
}

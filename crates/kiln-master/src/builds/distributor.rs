//! The activity loop that starts builds: whenever something changes (a new request, a worker
//! attaching, a build finishing) it asks the pure distributor in `kiln-core` which requests start on
//! which workers, claims them, and starts their builds.

use std::sync::Arc;
use std::time::Duration;

use kiln_core::distributor::{BuilderSlots, PendingRequest, distribute};
use kiln_db::DbError;

use crate::master::Master;

/// A pass also runs this often without a wake-up, to pick up requests other masters released.
const IDLE_PASS: Duration = Duration::from_secs(2);

pub async fn run(master: Arc<Master>) {
    let mut shutdown = master.shutdown_signal();
    loop {
        tokio::select! {
            _ = master.distributor_wake.notified() => {}
            _ = tokio::time::sleep(IDLE_PASS) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        if let Err(error) = pass(&master).await {
            tracing::error!(%error, "distributing build requests");
        }
    }
}

async fn pass(master: &Arc<Master>) -> Result<(), DbError> {
    if *master.shutdown_signal().borrow() {
        return Ok(());
    }
    let config = master.config();
    let ids = master.builder_ids();
    let workers = master.workers.availability();
    // Only builders with a worker free for them can start anything; for each, only as many requests
    // as it has such workers can start in this pass, so only those are read, all in one query.
    let mut builders = Vec::new();
    let mut wanted = Vec::new();
    for b in &config.builders {
        let Some(id) = ids.get(&b.name).copied() else {
            continue;
        };
        let free = workers
            .iter()
            .filter(|w| {
                b.workernames.contains(&w.name) && w.available && !w.busy_builders.contains(&id)
            })
            .filter(|w| {
                w.max_builds
                    .is_none_or(|m| (w.busy_builders.len() as u32) < m)
            })
            .count();
        if free == 0 {
            continue;
        }
        wanted.push((id, free as i64));
        builders.push(BuilderSlots {
            id,
            name: b.name.clone(),
            workers: b.workernames.clone(),
        });
    }
    let rows = master.db.pending_for_builders(&wanted).await?;
    if rows.is_empty() {
        return Ok(());
    }
    let pending: Vec<PendingRequest> = rows
        .iter()
        .map(|r| PendingRequest {
            id: r.id,
            builder: kiln_core::BuilderId(r.builderid),
            priority: r.priority,
            submitted_at: r.submitted_at,
        })
        .collect();
    for a in distribute(&pending, &builders, &workers) {
        if !master.workers.reserve(&a.worker, a.builder) {
            continue;
        }
        let (Some(row), Some(builder), Some(workerid)) = (
            rows.iter().find(|r| r.id == a.request).cloned(),
            config
                .builders
                .iter()
                .find(|b| ids.get(&b.name) == Some(&a.builder))
                .cloned(),
            master.workers.id(&a.worker),
        ) else {
            master.workers.release(&a.worker, a.builder);
            continue;
        };
        // Claiming the request and starting its build are one write.
        let started = match master
            .updates
            .claim_and_start_build(a.request, row.buildsetid, a.builder, workerid)
            .await
        {
            Ok(started) => started,
            Err(DbError::AlreadyClaimed(_)) => {
                master.workers.release(&a.worker, a.builder);
                continue;
            }
            Err(e) => {
                master.workers.release(&a.worker, a.builder);
                return Err(e);
            }
        };
        tokio::spawn(crate::builds::runner::run(
            master.clone(),
            row,
            started,
            builder,
            a.builder,
            a.worker,
        ));
    }
    Ok(())
}

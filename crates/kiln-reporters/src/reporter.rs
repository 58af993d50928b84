//! One reporter at work: it decides, then it delivers.
//!
//! Deciding takes the bursts of events the feed reads for every reporter, in order, asks each
//! generator about each event past the reporter's own position, and stores what a burst yields
//! in the outbox in the same transaction that moves the reporter past it: a report is decided
//! once, and never lost between being decided and being stored. Delivering sends the reports
//! this master stored as they are handed over, or leases the oldest stored ones, and records
//! the outcomes; a failure is retried with a growing delay up to the reporter's bound, and a
//! restart resumes where the record and the outbox say. The timers of missing workers are in
//! `reporter/missing.rs`.

use std::sync::Arc;
use std::time::Duration;

use kiln_api::{Delivery, DurableConsumer, ReadSide, Services};
use kiln_config::ReporterConfig;
use kiln_db::{NewReport, NextReport, StoredEvent};
use tokio::sync::Notify;

mod missing;

use crate::cache::BuildCache;
use crate::feed::{Feed, Handed};
use crate::formatter::Site;
use crate::generators::{Generator, Inputs, Trigger};
use crate::hooks::Hooks;
use crate::report::Report;
use crate::sink::{self, Failure};
use crate::store::{Expected, Store, Stored};
use missing::MissingWorkers;

/// Acknowledge progress through events that gave no report at least this often.
const ACK_EVERY: i64 = 64;
/// How long an idle deliverer waits before it looks at the outbox again, in case another
/// master stored reports for it.
const IDLE_POLL: Duration = Duration::from_secs(30);
/// How long the feed lets the events the reporters decide gather after a wake-up: a build's
/// events, and on a busy master a burst of builds, are then read and stored in a few
/// statements rather than a few for each event, for a delay that nobody waiting for a mail or
/// a status notices.
pub(crate) const LINGER: Duration = Duration::from_millis(200);
/// How many due reports one lease takes.
const DELIVERY_BATCH: i64 = 64;
/// How long a deliverer sends from one lease before it records what it sent.
const BATCH_TIME: Duration = Duration::from_secs(10);
/// How many finished reports of each reporter are kept for its page.
pub const KEEP_FINISHED: i64 = 1000;

/// A reporter and what it shares between its two loops.
pub struct Reporter {
    pub config: ReporterConfig,
    generators: Vec<Generator>,
    /// What stays open between deliveries: an IRC reporter's bot, a mail reporter's relay.
    connections: sink::Connections,
    services: Services,
    hooks: Hooks,
    stored: Notify,
    /// The builds that every reporter read, shared by all of them.
    builds: Arc<BuildCache>,
    /// Where the reporter starts reading the record if it never read it before.
    first: Option<i64>,
    /// The record of events, read once for every reporter.
    feed: Arc<Feed>,
    /// Where what the reporter decided is stored, and what it delivered recorded, with what the
    /// others asked meanwhile.
    store: Arc<Store>,
    /// The reports this master stored for the reporter since it last leased, leased to it
    /// already.
    handed: std::sync::Mutex<HandedReports>,
}

/// Reports stored for the deliverer, with the store's expectation that their delivery will be
/// recorded.
#[derive(Default)]
struct HandedReports {
    rows: Vec<kiln_db::ReportRow>,
    delivering: Vec<Expected>,
}

impl Reporter {
    /// Compiles a reporter's generators; an error names what does not compile.
    pub fn new(
        config: ReporterConfig,
        services: Services,
        builds: Arc<BuildCache>,
        feed: Arc<Feed>,
        store: Arc<Store>,
        first: Option<i64>,
    ) -> Result<Reporter, String> {
        let generators: Vec<Generator> = config
            .generators
            .iter()
            .map(Generator::new)
            .collect::<Result<_, _>>()?;
        let needs = generators
            .iter()
            .fold(crate::data::Needs::default(), |n, g| n.union(g.needs()));
        let irc = match &config.kind {
            kiln_config::ReporterKind::Irc(c) => Some(crate::irc::Bot::new(
                &config.name,
                (**c).clone(),
                services.clone(),
            )),
            _ => None,
        };
        // An IRC bot announces builds as they start to those who asked.
        let starts = irc.is_some()
            || generators
                .iter()
                .any(|g| g.wants(Trigger::BuildNew(kiln_core::BuildId(0))));
        builds.want(needs, starts);
        Ok(Reporter {
            connections: sink::Connections {
                irc,
                ..Default::default()
            },
            hooks: Hooks::new(services.read.clone()),
            config,
            generators,
            services,
            stored: Notify::new(),
            builds,
            first,
            feed,
            store,
            handed: std::sync::Mutex::default(),
        })
    }

    /// The consumer name of the reporter in the durable record.
    fn consumer(&self) -> String {
        format!("reporter:{}", self.config.name)
    }

    /// Runs both loops until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let deliverer = self.clone();
        let bot = self.connections.irc.clone();
        let connection = async move {
            match bot {
                Some(bot) => bot.run().await,
                None => std::future::pending().await,
            }
        };
        tokio::join!(self.decide(), deliverer.deliver(), connection);
    }

    async fn decide(&self) {
        let name = self.consumer();
        let start = loop {
            match DurableConsumer::position_of(&self.services, &name, self.first).await {
                Ok(position) => break position,
                Err(error) => {
                    tracing::warn!(reporter = %self.config.name, %error, "starting to read events");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let mut bursts = self.feed.subscribe(start);
        let mut acked = start;
        let mut handled = start;
        let mut missing = MissingWorkers::start(self).await;
        loop {
            let deadline = missing.next_deadline();
            let idle = handled > acked;
            tokio::select! {
                handed = bursts.recv() => {
                    let Some(Handed { burst, expected }) = handed else {
                        tracing::error!(reporter = %self.config.name, "the events stopped coming");
                        std::future::pending::<()>().await;
                        continue;
                    };
                    let decided = self.handle_batch(&burst, handled, &mut missing, expected).await;
                    let Some((last, stored)) = decided else {
                        continue;
                    };
                    handled = last;
                    if stored {
                        acked = last;
                    } else if handled - acked >= ACK_EVERY {
                        self.acknowledge(handled).await;
                        acked = handled;
                    }
                }
                _ = sleep_until(&*self.services.read, deadline) => {
                    missing.fire(self).await;
                }
                _ = tokio::time::sleep(Duration::from_millis(500)), if idle => {
                    self.acknowledge(handled).await;
                    acked = handled;
                }
            }
        }
    }

    /// Decides the reports of the events of a burst past `handled` and stores them together,
    /// which moves the reporter past the burst; the position of its last event, if it had one
    /// past `handled`, and whether reports were stored. A reporter that stored nothing
    /// acknowledges its progress later: the events decided nothing, so reading them again
    /// after a restart would decide nothing either.
    async fn handle_batch(
        &self,
        burst: &[Delivery],
        handled: i64,
        missing: &mut MissingWorkers,
        expected: Expected,
    ) -> Option<(i64, bool)> {
        let deliveries: Vec<&Delivery> = burst
            .iter()
            .filter(|d| match d {
                Delivery::Event(e) => e.id > handled,
                Delivery::Missed { through, .. } => *through > handled,
            })
            .collect();
        let mut reports = Vec::new();
        let mut last = None;
        for delivery in deliveries {
            match delivery {
                Delivery::Event(event) => {
                    missing.note(self, event).await;
                    reports.extend(self.handle(event).await);
                    last = Some(event.id);
                }
                Delivery::Missed { after, through } => {
                    tracing::error!(
                        reporter = %self.config.name, after, through,
                        "events were pruned before this reporter read them: their reports are lost"
                    );
                    last = Some(*through);
                }
            }
        }
        let last = last?;
        let stored = !reports.is_empty();
        if stored {
            self.enqueue(reports, last, Some(expected)).await;
        }
        Some((last, stored))
    }

    async fn acknowledge(&self, position: i64) {
        if let Err(error) = self
            .services
            .events
            .acknowledge(&self.consumer(), position)
            .await
        {
            tracing::warn!(reporter = %self.config.name, %error, "acknowledging events");
        }
    }

    /// Decides the report of one event, if it makes one.
    async fn handle(&self, event: &StoredEvent) -> Option<NewReport> {
        let trigger = Trigger::of_key(&event.key)?;
        let dedup = format!("event:{}", event.id);
        if let Some(bot) = &self.connections.irc {
            return match bot.announcements(trigger, &self.builds, event.id).await {
                Ok(lines) if !lines.is_empty() => {
                    let payload = serde_json::json!({ "lines": lines });
                    Some(self.new_report(&payload, format!("{} on IRC", event.key), dedup))
                }
                Ok(_) => None,
                Err(error) => {
                    tracing::error!(reporter = %self.config.name, key = %event.key, %error, "deciding IRC announcements");
                    None
                }
            };
        }
        if !self.generators.iter().any(|g| g.wants(trigger)) {
            return None;
        }
        let config = self.services.read.config();
        let site = site(&*self.services.read);
        let inputs = Inputs {
            read: &*self.services.read,
            position: event.id,
            builds: &self.builds,
            config: &config,
            site: &site,
            hooks: &self.hooks,
        };
        let mut reports = Vec::new();
        for g in self.generators.iter().filter(|g| g.wants(trigger)) {
            match g.generate(&inputs, trigger).await {
                Ok(Some(r)) => reports.push(r),
                Ok(None) => {}
                Err(error) => tracing::error!(
                    reporter = %self.config.name, generator = g.config.kind.class(),
                    key = %event.key, error = %self.hooks.redact(&error),
                    "a generator failed: this event is not reported"
                ),
            }
        }
        self.prepare(&reports, dedup).await
    }

    /// Encodes the reports that one event or timer made into what the reporter stores.
    async fn prepare(&self, reports: &[Report], dedup: String) -> Option<NewReport> {
        if reports.is_empty() {
            return None;
        }
        let payload =
            match sink::encode(&self.config, reports, &*self.services.read, &self.hooks).await {
                Ok(Some(p)) => p,
                Ok(None) => return None,
                Err(error) => {
                    tracing::error!(reporter = %self.config.name, %error, "preparing a report");
                    return None;
                }
            };
        let summary = reports
            .iter()
            .map(|r| r.summary.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        Some(self.new_report(&payload, summary, dedup))
    }

    /// A report to store, with the secrets it may carry redacted.
    fn new_report(&self, payload: &serde_json::Value, summary: String, dedup: String) -> NewReport {
        NewReport {
            reporter: self.config.name.clone(),
            dedup,
            summary,
            payload: self.hooks.redact(&payload.to_string()),
        }
    }

    /// Stores reports with the event position they were decided up to (0: not from events,
    /// which moves nothing); `expected`, if the store expects them.
    async fn enqueue(
        &self,
        reports: Vec<NewReport>,
        position: i64,
        mut expected: Option<Expected>,
    ) {
        let consumer = if position > 0 {
            self.consumer()
        } else {
            String::new()
        };
        // The events are not passed until their reports are stored: a database that refuses
        // the write for a while holds the reporter back rather than losing the reports.
        loop {
            let decided = kiln_db::Decided {
                consumer: consumer.clone(),
                position,
                reports: reports.clone(),
            };
            match self
                .store
                .store(decided, expected.take().into_iter().collect())
                .await
            {
                Ok(Stored { rows, delivering }) => {
                    let mut handed = lock(&self.handed);
                    handed.rows.extend(rows);
                    handed.delivering.extend(delivering);
                    break;
                }
                Err(error) => {
                    tracing::warn!(reporter = %self.config.name, %error, "storing reports");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        self.stored.notify_one();
    }

    async fn deliver(&self) {
        let name = &self.config.name;
        let mut delivered: u64 = 0;
        let mut emptied = false;
        // The newest report this deliverer took, from the outbox or from `handed`: reports
        // go out in the order of their ids, so one handed over that is not newer was taken
        // from the outbox already.
        let mut newest = 0;
        loop {
            // A lease that took fewer reports than it could, all of them sent, left nothing
            // due behind them: asking the outbox again would cost two statements to learn so.
            // This master's next reports wake the deliverer, and come leased to it already, so
            // they go out without a lease; those other masters stored for it, or left behind,
            // are looked for after `IDLE_POLL`, as when the outbox is empty.
            let mut rows = Vec::new();
            let mut expected = Vec::new();
            if std::mem::take(&mut emptied) {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = self.stored.notified() => {}
                }
                let handed = std::mem::take(&mut *lock(&self.handed));
                (rows, expected) = (handed.rows, handed.delivering);
                rows.retain(|r| r.id > newest);
            }
            if rows.is_empty() {
                rows = match self.lease().await {
                    Some(rows) => rows,
                    None => continue,
                };
            }
            newest = rows.iter().map(|r| r.id).fold(newest, i64::max);
            let leased = rows.len();
            // The store waits for this batch's record while it goes out.
            expected.push(self.store.expect());
            let sent = self.deliver_batch(rows).await;
            let count = sent.len();
            // Recorded with what the other reporters deliver or decide meanwhile.
            match self.store.delivered(sent, expected).await {
                Ok(()) => emptied = count == leased && (leased as i64) < DELIVERY_BATCH,
                Err(error) => tracing::warn!(reporter = %name, %error, "recording deliveries"),
            }
            let before = delivered;
            delivered += count as u64;
            if before / 100 != delivered / 100
                && let Err(error) = self.services.outbox.prune(name, KEEP_FINISHED).await
            {
                tracing::warn!(reporter = %name, %error, "pruning the outbox");
            }
        }
    }

    /// Leases the reporter's oldest due reports, or waits until some may be due; `None` when
    /// there were none to take. Reports handed over before the lease are among what it takes.
    async fn lease(&self) -> Option<Vec<kiln_db::ReportRow>> {
        let name = &self.config.name;
        *lock(&self.handed) = HandedReports::default();
        let next = self.services.outbox.next(name, DELIVERY_BATCH).await;
        match next {
            Ok(NextReport::Due(rows)) => Some(rows),
            Ok(NextReport::At(at)) => {
                let wait = (at - self.services.read.now()).clamp(0, 3600) as u64;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(wait.max(1))) => {}
                    _ = self.stored.notified() => {}
                }
                None
            }
            Ok(NextReport::Empty) => {
                tokio::select! {
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                    _ = self.stored.notified() => {}
                }
                None
            }
            Err(error) => {
                tracing::warn!(reporter = %name, %error, "reading the outbox");
                tokio::time::sleep(Duration::from_secs(5)).await;
                None
            }
        }
    }

    /// Sends leased reports in order until one fails, which is recorded; the ids of those sent.
    /// Those not tried stay leased to this master, which takes them again next. A batch stops
    /// after [`BATCH_TIME`], so that its successes are recorded well within the lease.
    async fn deliver_batch(&self, rows: Vec<kiln_db::ReportRow>) -> Vec<i64> {
        let name = &self.config.name;
        let started = tokio::time::Instant::now();
        let mut sent = Vec::new();
        for row in rows {
            if started.elapsed() > BATCH_TIME {
                break;
            }
            let payload: serde_json::Value =
                serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null);
            let outcome = sink::deliver(
                &self.config,
                row.id,
                &payload,
                &*self.services.read,
                &self.hooks,
                &self.connections,
            )
            .await;
            let failure = match outcome {
                Ok(()) => {
                    tracing::debug!(reporter = %name, report = row.id, summary = %row.summary, "delivered");
                    sent.push(row.id);
                    continue;
                }
                Err(failure) => failure,
            };
            let attempts = row.attempts as u32 + 1;
            let (error, retry_at) = match failure {
                Failure::Retry(e) if attempts < self.config.retry.max_attempts => {
                    let at = self.services.read.now() + self.config.retry.delay_after(attempts);
                    (e, Some(at))
                }
                Failure::Retry(e) | Failure::Permanent(e) => (e, None),
            };
            let error = self.hooks.redact(&error);
            match retry_at {
                Some(at) => tracing::warn!(
                    reporter = %name, report = row.id, summary = %row.summary, attempts,
                    retry_in = at - self.services.read.now(), %error,
                    "delivery failed; it will be tried again"
                ),
                None => tracing::error!(
                    reporter = %name, report = row.id, summary = %row.summary, attempts, %error,
                    "delivery failed for good"
                ),
            }
            if let Err(error) = self.services.outbox.failed(row.id, &error, retry_at).await {
                tracing::warn!(reporter = %name, %error, "recording a delivery");
            }
            // Reports go out in order: those after a failure wait for its retry.
            break;
        }
        sent
    }
}

/// A lock that a panic elsewhere did not spoil: the handed reports are a plain list.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn site(read: &dyn ReadSide) -> Site {
    Site {
        title: read.config().title.clone(),
        url: crate::data::site_url(read),
    }
}

/// Sleeps until the master's clock reads `at`, or forever without one.
async fn sleep_until(read: &dyn ReadSide, at: Option<i64>) {
    match at {
        Some(at) => {
            let wait = (at - read.now()).max(0) as u64;
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        None => std::future::pending().await,
    }
}

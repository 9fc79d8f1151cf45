//! Group commit on PostgreSQL: concurrent ingest requests of one replica
//! share a transaction, so that they share its round trips, its aggregate
//! upserts and its WAL flush, while each stays all-or-nothing.
//!
//! [`COMMITTERS`] tasks take turns at the queue: each takes what is waiting
//! (up to [`GROUP_HOUR_PART_LIMIT`]) and writes it in one transaction, every
//! request's events in a savepoint of its own (a request with conflicts rolls
//! back only its savepoint), then the fresh events of all of them added to the
//! aggregates in one statement per table, in key order. A request is answered
//! only after the commit.
//!
//! Before its transaction, a group makes the `usage_events` partitions of
//! the months it is the first to meet (`partitions.rs`).
//!
//! What ends a group early runs it again: a deadlock or serialisation failure,
//! or an insert into a month whose partition a prune dropped meanwhile
//! (the whole group, up to [`RETRIES`] times); a request refused by the
//! retention watermark, which is read after the events are written (that
//! request is answered, the others run again); a sum that would overflow
//! (each request then runs alone, so the one that tips it is refused); a
//! stamped request that would commit in a later hour than it was stamped in
//! (that hour's window may be exported by then).

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;

use super::ingest::{Aggregates, KeyCache, Staged, stage};
use super::partitions::{Partitions, is_missing_partition, usage_month};
use crate::store::sql::Dialect;
use crate::store::{IngestReceipt, StoreError, retention};
use crate::usage::UsageRecord;
use crate::usage::split::hour_count;
use crate::usage::time::Granularity;

/// Transactions a replica has in flight for ingest at once: while one waits
/// for its WAL flush, the next group is being written.
pub(super) const COMMITTERS: usize = 2;
/// Most hour parts (hourly upserts) written in one group; more requests wait
/// for the next. Two default-size requests, as on SQLite.
const GROUP_HOUR_PART_LIMIT: usize = 2 * crate::usage::batch::DEFAULT_MAX_HOUR_PARTS;
/// Times a group is run again after a deadlock, a serialisation failure or
/// an hour boundary.
const RETRIES: usize = 5;
/// Requests that may wait in the queue before senders wait (back-pressure).
const QUEUE_CAPACITY: usize = 256;

type Reply = Result<IngestReceipt, StoreError>;

/// Records to store atomically; the reply comes once they are committed.
struct IngestJob {
    records: Vec<UsageRecord>,
    reply: oneshot::Sender<Reply>,
}

/// The queue the replica's ingest requests wait in.
pub(super) struct GroupCommit {
    queue: mpsc::Sender<IngestJob>,
}

impl GroupCommit {
    /// Starts the committer tasks, writing through `pool`.
    pub fn start(pool: Pool) -> Self {
        let cache = Arc::new(Mutex::default());
        let partitions = Arc::new(Partitions::default());
        let (queue, jobs) = mpsc::channel(QUEUE_CAPACITY);
        let jobs = Arc::new(tokio::sync::Mutex::new(jobs));
        for _ in 0..COMMITTERS {
            let committer = Committer {
                pool: pool.clone(),
                cache: cache.clone(),
                partitions: partitions.clone(),
            };
            tokio::spawn(committer.run(jobs.clone()));
        }
        GroupCommit { queue }
    }

    /// Stores `records` atomically (see [`crate::store::Store::ingest`]).
    pub async fn ingest(&self, records: Vec<UsageRecord>) -> Reply {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Unavailable(anyhow!("the ingest committers have stopped"));
        self.queue
            .send(IngestJob { records, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One of the tasks that write groups.
struct Committer {
    pool: Pool,
    /// Subscription keys by id as reported, and instance ids by digest: only
    /// committed keys, which never change. Shared by the committers.
    cache: Arc<Mutex<KeyCache>>,
    /// The months of `usage_events` known to have a partition.
    partitions: Arc<Partitions>,
}

/// How one attempt at a group ended.
enum Attempt {
    /// Committed (or, for a group of one, refused as a whole): every request's reply.
    Done(Vec<Reply>),
    /// Rolled back: these requests are answered now, the others run again.
    Answered(Vec<(usize, Reply)>),
    /// Rolled back: a sum would overflow; each request runs alone.
    Overflow,
    /// Rolled back: the hour changed while stamped requests were written.
    Straddled,
}

impl Committer {
    /// Takes groups from the queue until every sender is gone.
    async fn run(self, jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<IngestJob>>>) {
        loop {
            let group = {
                let mut jobs = jobs.lock().await;
                let Some(first) = jobs.recv().await else {
                    return;
                };
                let mut parts = hour_parts(&first);
                let mut group = vec![first];
                while parts < GROUP_HOUR_PART_LIMIT {
                    match jobs.try_recv() {
                        Ok(job) => {
                            parts += hour_parts(&job);
                            group.push(job);
                        }
                        Err(_) => break,
                    }
                }
                group
            };
            self.commit(group).await;
        }
    }

    /// Writes `group` and answers every request in it.
    async fn commit(&self, mut group: Vec<IngestJob>) {
        let mut tries = 0;
        while !group.is_empty() {
            match self.make_partitions(&mut group).await {
                Ok(()) => {}
                Err(error) if tries < RETRIES && is_retryable(&error) => {
                    tries += 1;
                    continue;
                }
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "making usage event partitions failed"
                    );
                    return answer_all(group, &StoreError::from(error));
                }
            }
            if group.is_empty() {
                return;
            }
            match self.attempt(&group).await {
                Ok(Attempt::Done(replies)) => {
                    for (job, reply) in group.into_iter().zip(replies) {
                        let _ = job.reply.send(reply);
                    }
                    return;
                }
                Ok(Attempt::Answered(answered)) => {
                    // Highest index first, so the lower ones stay in place.
                    for (index, reply) in answered.into_iter().rev() {
                        let _ = group.remove(index).reply.send(reply);
                    }
                }
                Ok(Attempt::Overflow) => {
                    for job in group {
                        Box::pin(self.commit(vec![job])).await;
                    }
                    return;
                }
                Ok(Attempt::Straddled) if tries < RETRIES => tries += 1,
                Ok(Attempt::Straddled) => {
                    return answer_all(
                        group,
                        &StoreError::Unavailable(anyhow!(
                            "the request kept straddling an hour boundary"
                        )),
                    );
                }
                Err(error) if tries < RETRIES && is_retryable(&error) => {
                    if is_missing_partition(&error) {
                        self.partitions.forget();
                    }
                    tries += 1;
                    tracing::debug!(error = format!("{error:#}"), tries, "ingest runs again");
                }
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "ingest transaction failed");
                    return answer_all(group, &StoreError::from(error));
                }
            }
        }
    }

    /// Makes the partitions of the months the group's records fall in, when
    /// this replica does not know them yet; answers (and takes out of the
    /// group) the requests with usage older than the retention watermark,
    /// whose months are never made again once pruned.
    async fn make_partitions(&self, group: &mut Vec<IngestJob>) -> anyhow::Result<()> {
        answer_expired(group, self.partitions.watermark());
        let months =
            (group.iter()).flat_map(|job| job.records.iter().map(|r| usage_month(r.usage_end)));
        let unknown = self.partitions.unknown(months);
        if unknown.is_empty() {
            return Ok(());
        }
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| anyhow!("no database connection: {e}"))?;
        let watermark = self.partitions.make(&mut client, unknown).await?;
        answer_expired(group, watermark);
        Ok(())
    }

    /// One transaction for `group`; committed only when it ends in [`Attempt::Done`].
    async fn attempt(&self, group: &[IngestJob]) -> anyhow::Result<Attempt> {
        let mut client = self
            .pool
            .get()
            .await
            .map_err(|e| anyhow!("no database connection: {e}"))?;
        let tx = client.transaction().await?;
        let now = database_now(&tx).await?;

        let mut replies: Vec<Option<Reply>> = Vec::with_capacity(group.len());
        let mut staged: Vec<Option<Staged>> = Vec::with_capacity(group.len());
        // Savepoints by hand, so that their statements ride along with
        // others (pipelined, one round trip): a request's savepoint opens
        // with its first statements, and is released with the next one's
        // opening, or with the watermark's read after the last.
        let mut open = false;
        for job in group {
            let opening = if open {
                "RELEASE SAVEPOINT request; SAVEPOINT request"
            } else {
                "SAVEPOINT request"
            };
            let (opened, request) = tokio::join!(
                tx.batch_execute(opening),
                stage(&self.cache, &tx, &job.records, now)
            );
            opened?;
            open = true;
            match request {
                Ok(Ok(request)) => {
                    replies.push(None);
                    staged.push(Some(request));
                }
                Ok(Err(refused)) => {
                    rollback_to_savepoint(&tx).await?;
                    open = false;
                    replies.push(Some(Err(refused)));
                    staged.push(None);
                }
                Err(error) if is_retryable(&error) => return Err(error),
                Err(error) => {
                    rollback_to_savepoint(&tx).await?;
                    open = false;
                    replies.push(Some(Err(StoreError::from(error))));
                    staged.push(None);
                }
            }
        }

        // Read after the events were written: a pruned event a request no
        // longer found was deleted by a transaction that also raised the
        // watermark, committed before this statement began.
        let watermark = tx.prepare_cached(retention::WATERMARK_SQL).await?;
        let release = async {
            if open {
                tx.batch_execute("RELEASE SAVEPOINT request").await
            } else {
                Ok(())
            }
        };
        let (released, watermark) = tokio::join!(release, tx.query_one(&watermark, &[]));
        released?;
        let watermark: i64 = watermark?.get(0);
        let mut answered = Vec::new();
        for (index, (job, request)) in group.iter().zip(&staged).enumerate() {
            let Some(request) = request else { continue };
            if let Some(expired) = retention::expired(&job.records, watermark) {
                answered.push((index, Err(expired)));
            } else if let Some(event) = &request.vanished {
                answered.push((
                    index,
                    Err(StoreError::Unavailable(anyhow!(
                        "event '{event}' vanished while being ingested"
                    ))),
                ));
            }
        }
        if !answered.is_empty() {
            tx.rollback().await?;
            return Ok(Attempt::Answered(answered));
        }

        let mut aggregates = Aggregates::default();
        for (job, request) in group.iter().zip(&staged) {
            if let Some(request) = request {
                aggregates.add(&job.records, request, now);
            }
        }
        if aggregates.upsert(&tx).await?.is_err() {
            tx.rollback().await?;
            if group.len() > 1 {
                return Ok(Attempt::Overflow);
            }
            let refused = staged[0].as_ref().map_or_else(
                || {
                    replies[0]
                        .take()
                        .expect("an unstaged request has its reply")
                },
                |request| Err(request.sum_overflow()),
            );
            return Ok(Attempt::Done(vec![refused]));
        }

        let stamped = group.iter().zip(&staged).any(|(job, request)| {
            request.is_some() && job.records.iter().any(|r| r.reported_time.is_none())
        });
        if stamped
            && Granularity::Hourly.bucket_of(database_now(&tx).await?)
                != Granularity::Hourly.bucket_of(now)
        {
            tx.rollback().await?;
            return Ok(Attempt::Straddled);
        }
        tx.commit().await?;

        let mut cache = self.cache.lock().expect("key cache lock");
        let replies = replies
            .into_iter()
            .zip(staged)
            .map(|(reply, request)| match (reply, request) {
                (Some(reply), _) => reply,
                (None, Some(request)) => {
                    let receipt = request.receipt(now);
                    cache.keep_new(request.keys);
                    Ok(receipt)
                }
                (None, None) => unreachable!("every request is staged or answered"),
            })
            .collect();
        Ok(Attempt::Done(replies))
    }
}

/// Hourly upserts a request costs.
fn hour_parts(job: &IngestJob) -> usize {
    job.records
        .iter()
        .map(|r| hour_count(r.usage_start, r.usage_end))
        .sum()
}

/// Answers (and takes out of the group) the requests with usage older than
/// the retention watermark.
fn answer_expired(group: &mut Vec<IngestJob>, watermark: i64) {
    for index in (0..group.len()).rev() {
        if let Some(expired) = retention::expired(&group[index].records, watermark) {
            let _ = group.remove(index).reply.send(Err(expired));
        }
    }
}

fn answer_all(group: Vec<IngestJob>, error: &StoreError) {
    for job in group {
        let _ = job.reply.send(Err(error.duplicate()));
    }
}

/// Undoes the request written since the last `SAVEPOINT request`, and ends
/// that savepoint.
async fn rollback_to_savepoint(tx: &Transaction<'_>) -> anyhow::Result<()> {
    tx.batch_execute("ROLLBACK TO SAVEPOINT request; RELEASE SAVEPOINT request")
        .await?;
    Ok(())
}

/// The database's clock ([`Dialect::now_ms`]), which stamps reported times,
/// so that replicas' clocks need not agree.
async fn database_now(tx: &Transaction<'_>) -> anyhow::Result<DateTime<Utc>> {
    let now = tx
        .prepare_cached(&format!("SELECT {}", Dialect::Postgres.now_ms()))
        .await?;
    let ms: i64 = tx.query_one(&now, &[]).await?.get(0);
    crate::store::exports::time(ms)
}

fn is_retryable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                // A lock timeout: only making a month's partition sets one.
                || *code == SqlState::LOCK_NOT_AVAILABLE
        })
        || is_missing_partition(error)
}

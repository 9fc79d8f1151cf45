//! [`ExportStore`] on PostgreSQL, for replicas sharing one database.
//!
//! Claims, requeues and operator requests change which runs are running or
//! queued; each takes the advisory lock [`RUNS_LOCK`] for its transaction, so
//! they apply one after the other across replicas and every statement after
//! the lock sees the others' commits. Finishing is fenced by the attempt
//! number instead: only the attempt that holds the run can record it.

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{DB_NOW_MS, PostgresStore, RUNS_LOCK};
use crate::store::StoreError;
use crate::store::exports::NEXT_CLAIMABLE_RUN;
use crate::store::exports::{
    DocumentInfo, ExportStore, FinishedAttempt, INSTALLATION_COLUMNS, Installation, Interrupted,
    NewInstallation, RUN_COLUMNS, Run, RunEnd, RunLogRecord, RunRequestOutcome, RunStatus,
    StoredDocument, decode_figures, decode_log, encode_log, new_uid, time,
};

fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

#[async_trait]
impl ExportStore for PostgresStore {
    async fn put_component(&self, sha256: &str, wasm: Vec<u8>) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO adapter_components (sha256, wasm, added_at) VALUES ($1, $2, $3)
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha256, &wasm, &Utc::now().to_rfc3339()],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(())
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT wasm FROM adapter_components WHERE sha256 = $1",
                &[&sha256],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn create_installation(&self, new: NewInstallation) -> Result<Installation, StoreError> {
        let client = self.client().await?;
        let now = Utc::now().timestamp_millis();
        let inserted = client
            .execute(
                "INSERT INTO adapter_installations
                   (name, uid, manifest, component_sha256, description, enabled, watermark_ms,
                    installed_at_ms, updated_at_ms)
                 VALUES ($1, $2, $3, $4, $5, true, $6, $7, $7)
                 ON CONFLICT ((fold(name))) DO NOTHING",
                &[
                    &new.name,
                    &new_uid()?,
                    &new.manifest,
                    &new.component_sha256,
                    &serde_json::to_string(&new.description).map_err(anyhow::Error::from)?,
                    &ms(new.first_window),
                    &now,
                ],
            )
            .await
            .map_err(anyhow::Error::from)?;
        if inserted == 0 {
            return Err(StoreError::Exists(format!(
                "an adapter is already installed as '{}'",
                new.name
            )));
        }
        Ok(installation_by_name(&client, &new.name)
            .await?
            .context("the installation vanished after it was written")?)
    }

    async fn upgrade_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Option<Installation>, StoreError> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE adapter_installations
                 SET manifest = $2, component_sha256 = $3, description = $4, updated_at_ms = $5
                 WHERE fold(name) = fold($1)",
                &[
                    &new.name,
                    &new.manifest,
                    &new.component_sha256,
                    &serde_json::to_string(&new.description).map_err(anyhow::Error::from)?,
                    &Utc::now().timestamp_millis(),
                ],
            )
            .await
            .map_err(anyhow::Error::from)?;
        if updated == 0 {
            return Ok(None);
        }
        Ok(installation_by_name(&client, &new.name).await?)
    }

    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<Installation>, StoreError> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE adapter_installations SET enabled = $2, updated_at_ms = $3
                 WHERE fold(name) = fold($1)",
                &[&name, &enabled, &Utc::now().timestamp_millis()],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(installation_by_name(&client, name).await?)
    }

    async fn remove_installation(&self, name: &str) -> Result<bool, StoreError> {
        // Runs and documents go with it (ON DELETE CASCADE).
        let deleted = self
            .client()
            .await?
            .execute(
                "DELETE FROM adapter_installations WHERE fold(name) = fold($1)",
                &[&name],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(deleted == 1)
    }

    async fn installation(&self, name: &str) -> Result<Option<Installation>, StoreError> {
        Ok(installation_by_name(&self.client().await?, name).await?)
    }

    async fn installation_by_id(&self, id: i64) -> Result<Option<Installation>, StoreError> {
        let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE id = $1");
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&id])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(row.map(|row| installation_of(&row)).transpose()?)
    }

    async fn installations(&self) -> Result<Vec<Installation>, StoreError> {
        let sql =
            format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations ORDER BY fold(name)");
        let rows = self
            .client()
            .await?
            .query(&sql, &[])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(rows
            .iter()
            .map(installation_of)
            .collect::<anyhow::Result<_>>()?)
    }

    async fn schedule_windows(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<usize, StoreError> {
        // The unique (installation, window, revision) makes a second first
        // export impossible, whichever replica queues it; the lock keeps an
        // operator's request for the same window from colliding with it.
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUNS_LOCK])
                .await?;
            let queued = tx
                .execute(
                    "INSERT INTO export_runs
                       (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
                     SELECT $1, s, e, 0, 'pending', $4 FROM unnest($2::bigint[], $3::bigint[]) AS w (s, e)
                     ON CONFLICT (installation_id, window_start_ms, revision) DO NOTHING",
                    &[
                        &installation_id,
                        &windows.iter().map(|w| ms(w.0)).collect::<Vec<_>>(),
                        &windows.iter().map(|w| ms(w.1)).collect::<Vec<_>>(),
                        &Utc::now().timestamp_millis(),
                    ],
                )
                .await?;
            tx.commit().await?;
            anyhow::Ok(queued as usize)
        };
        Ok(work.await?)
    }

    async fn request_runs(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, StoreError> {
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUNS_LOCK])
                .await?;
            let now = Utc::now().timestamp_millis();
            let mut outcomes = Vec::with_capacity(windows.len());
            for (start, end) in windows {
                let latest = tx
                    .query_opt(
                        "SELECT id, status, revision FROM export_runs
                         WHERE installation_id = $1 AND window_start_ms = $2
                         ORDER BY revision DESC LIMIT 1",
                        &[&installation_id, &ms(start)],
                    )
                    .await?
                    .map(|row| {
                        (
                            row.get::<_, i64>(0),
                            row.get::<_, String>(1),
                            row.get::<_, i64>(2),
                        )
                    });
                let insert = async |revision: i64| -> anyhow::Result<i64> {
                    Ok(tx
                        .query_one(
                            "INSERT INTO export_runs
                               (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
                             VALUES ($1, $2, $3, $4, 'pending', $5) RETURNING id",
                            &[&installation_id, &ms(start), &ms(end), &revision, &now],
                        )
                        .await?
                        .get(0))
                };
                let (id, outcome) = match latest {
                    None => (insert(0).await?, RunRequestOutcome::Queued),
                    Some((_, status, revision)) if status == "succeeded" => {
                        (insert(revision + 1).await?, RunRequestOutcome::Correction)
                    }
                    Some((id, status, _)) if status == "failed" => {
                        tx.execute(
                            "UPDATE export_runs SET status = 'pending', attempts = 0, reason = NULL,
                               next_attempt_ms = NULL, finished_at_ms = NULL, figures = NULL,
                               log = NULL
                             WHERE id = $1",
                            &[&id],
                        )
                        .await?;
                        (id, RunRequestOutcome::Requeued)
                    }
                    Some((id, status, _)) if status == "retrying" => {
                        // Asked for now: no need to wait out the backoff.
                        tx.execute(
                            "UPDATE export_runs SET next_attempt_ms = $2 WHERE id = $1",
                            &[&id, &now],
                        )
                        .await?;
                        (id, RunRequestOutcome::Requeued)
                    }
                    Some((id, _, _)) => (id, RunRequestOutcome::AlreadyQueued),
                };
                outcomes.push((run_by_id(&tx, id).await?, outcome));
            }
            tx.commit().await?;
            anyhow::Ok(outcomes)
        };
        Ok(work.await?)
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn claim_run(
        &self,
        now: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StoreError> {
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUNS_LOCK])
                .await?;
            let sql = format!(
                "UPDATE export_runs SET status = 'running', attempts = attempts + 1,
                   claims = claims + 1, lease_until_ms = {DB_NOW_MS} + $2, lease_holder = $3
                 WHERE id = ({NEXT_CLAIMABLE_RUN})
                 RETURNING {RUN_COLUMNS}"
            );
            let claimed = tx
                .query_opt(&sql, &[&ms(now), &millis(lease), &holder])
                .await?;
            tx.commit().await?;
            claimed.map(|row| run_of(&row)).transpose()
        };
        Ok(work.await?)
    }

    async fn renew_lease(
        &self,
        run_id: i64,
        claim: u32,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE export_runs SET lease_until_ms = {DB_NOW_MS} + $3
             WHERE id = $1 AND claims = $2 AND status = 'running'"
        );
        let updated = self
            .client()
            .await?
            .execute(&sql, &[&run_id, &i64::from(claim), &millis(lease)])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(updated == 1)
    }

    async fn finish_run(
        &self,
        run_id: i64,
        claim: u32,
        attempt: FinishedAttempt,
    ) -> Result<bool, StoreError> {
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let figures = serde_json::to_string(&attempt.figures)?;
            let log = encode_log(&attempt.log)?;
            let (status, reason, next_attempt) = match &attempt.end {
                RunEnd::Succeeded { .. } => (RunStatus::Succeeded, None, None),
                RunEnd::Retry { reason, at } => {
                    (RunStatus::Retrying, Some(reason.as_str()), Some(ms(*at)))
                }
                RunEnd::Failed { reason } => (RunStatus::Failed, Some(reason.as_str()), None),
            };
            // Only this attempt finishes the run: one requeued or taken over meanwhile is left alone.
            let updated = tx
                .query_opt(
                    "UPDATE export_runs SET status = $2, reason = $3, next_attempt_ms = $4,
                       finished_at_ms = $5, figures = $6, log = $7, lease_until_ms = NULL
                     WHERE id = $1 AND status = 'running' AND claims = $8
                     RETURNING installation_id",
                    &[
                        &run_id,
                        &status.as_str(),
                        &reason,
                        &next_attempt,
                        &Utc::now().timestamp_millis(),
                        &figures,
                        &log,
                        &i64::from(claim),
                    ],
                )
                .await?;
            let Some(updated) = updated else {
                return Ok(false);
            };
            if let RunEnd::Succeeded { documents } = attempt.end {
                let insert = tx
                    .prepare(
                        "INSERT INTO run_documents (run_id, name, content_type, bytes)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .await?;
                for (name, document) in documents {
                    tx.execute(
                        &insert,
                        &[&run_id, &name, &document.content_type, &document.bytes],
                    )
                    .await?;
                }
                advance_watermark(&tx, updated.get(0)).await?;
            }
            tx.commit().await?;
            anyhow::Ok(true)
        };
        Ok(work.await?)
    }

    async fn requeue_interrupted_runs(
        &self,
        max_attempts: u32,
        which: Interrupted,
    ) -> Result<usize, StoreError> {
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&RUNS_LOCK])
                .await?;
            let ended = match which {
                Interrupted::LeaseEnded => format!("coalesce(lease_until_ms, 0) < {DB_NOW_MS}"),
                Interrupted::AllRunning => "true".to_owned(),
            };
            // A run that keeps taking its host down with it stops being retried.
            tx.execute(
                &format!(
                    "UPDATE export_runs SET status = 'failed', finished_at_ms = $2, lease_until_ms = NULL,
                       reason = 'interrupted by a host stop ' || attempts || ' times; not retried again'
                     WHERE status = 'running' AND attempts >= $1 AND {ended}"
                ),
                &[&i64::from(max_attempts), &Utc::now().timestamp_millis()],
            )
            .await?;
            let requeued = tx
                .execute(
                    &format!(
                        "UPDATE export_runs SET status = 'pending', lease_until_ms = NULL
                         WHERE status = 'running' AND {ended}"
                    ),
                    &[],
                )
                .await?;
            tx.commit().await?;
            anyhow::Ok(requeued as usize)
        };
        Ok(work.await?)
    }

    async fn runs(&self, installation_id: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM export_runs WHERE installation_id = $1
             ORDER BY window_start_ms DESC, revision DESC LIMIT $2"
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&installation_id, &(limit as i64)])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(rows.iter().map(run_of).collect::<anyhow::Result<_>>()?)
    }

    async fn holding_run(&self, installation_id: i64) -> Result<Option<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM export_runs
             WHERE installation_id = $1 AND status = 'failed' AND revision = 0
             ORDER BY window_start_ms LIMIT 1"
        );
        let row = self
            .client()
            .await?
            .query_opt(&sql, &[&installation_id])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(row.map(|row| run_of(&row)).transpose()?)
    }

    async fn run(
        &self,
        installation_id: i64,
        run_id: i64,
    ) -> Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>, StoreError> {
        let work = async {
            let client = self.client().await?;
            let sql = format!(
                "SELECT {RUN_COLUMNS}, log FROM export_runs WHERE id = $1 AND installation_id = $2"
            );
            let Some(row) = client.query_opt(&sql, &[&run_id, &installation_id]).await? else {
                return Ok(None);
            };
            let log = row
                .get::<_, Option<&str>>(13)
                .map(decode_log)
                .transpose()?
                .unwrap_or_default();
            let documents = client
                .query(
                    "SELECT name, content_type, length(bytes)::bigint FROM run_documents
                     WHERE run_id = $1 ORDER BY name COLLATE \"C\"",
                    &[&run_id],
                )
                .await?
                .iter()
                .map(|doc| DocumentInfo {
                    name: doc.get(0),
                    content_type: doc.get(1),
                    bytes: doc.get::<_, i64>(2) as u64,
                })
                .collect();
            anyhow::Ok(Some((run_of(&row)?, log, documents)))
        };
        Ok(work.await?)
    }

    async fn run_document(
        &self,
        run_id: i64,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT content_type, bytes FROM run_documents WHERE run_id = $1 AND name = $2",
                &[&run_id, &name],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(row.map(|row| StoredDocument {
            content_type: row.get(0),
            bytes: row.get(1),
        }))
    }

    async fn published_runs(
        &self,
        installation_id: i64,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM export_runs r
             JOIN run_documents d ON d.run_id = r.id AND d.name = $2
             WHERE r.installation_id = $1 AND r.status = 'succeeded'
               AND r.window_start_ms >= $3 AND r.window_start_ms < $4
               AND r.revision = (SELECT max(x.revision) FROM export_runs x
                                 WHERE x.installation_id = r.installation_id
                                   AND x.window_start_ms = r.window_start_ms
                                   AND x.status = 'succeeded')
             ORDER BY r.window_start_ms",
        );
        let rows = self
            .client()
            .await?
            .query(&sql, &[&installation_id, &document, &ms(from), &ms(to)])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(rows.iter().map(run_of).collect::<anyhow::Result<_>>()?)
    }

    async fn document_names(&self, installation_id: i64) -> Result<Vec<String>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT DISTINCT d.name COLLATE \"C\" FROM run_documents d JOIN export_runs r ON r.id = d.run_id
                 WHERE r.installation_id = $1 ORDER BY 1",
                &[&installation_id],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}

/// Moves the watermark over every exported window that now follows it.
async fn advance_watermark(
    client: &impl GenericClient,
    installation_id: i64,
) -> anyhow::Result<()> {
    let mut watermark: i64 = client
        .query_one(
            "SELECT watermark_ms FROM adapter_installations WHERE id = $1 FOR UPDATE",
            &[&installation_id],
        )
        .await?
        .get(0);
    while let Some(row) = client
        .query_opt(
            "SELECT window_end_ms FROM export_runs
             WHERE installation_id = $1 AND window_start_ms = $2 AND status = 'succeeded' LIMIT 1",
            &[&installation_id, &watermark],
        )
        .await?
    {
        watermark = row.get(0);
    }
    client
        .execute(
            "UPDATE adapter_installations SET watermark_ms = $2 WHERE id = $1",
            &[&installation_id, &watermark],
        )
        .await?;
    Ok(())
}

async fn installation_by_name(
    client: &impl GenericClient,
    name: &str,
) -> anyhow::Result<Option<Installation>> {
    let sql = format!(
        "SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE fold(name) = fold($1)"
    );
    client
        .query_opt(&sql, &[&name])
        .await?
        .map(|row| installation_of(&row))
        .transpose()
}

fn installation_of(row: &Row) -> anyhow::Result<Installation> {
    Ok(Installation {
        id: row.get(0),
        name: row.get(1),
        uid: row.get(2),
        manifest: row.get(3),
        component_sha256: row.get(4),
        description: serde_json::from_str(row.get(5)).context("a stored adapter description")?,
        enabled: row.get(6),
        watermark: time(row.get(7))?,
        installed_at: time(row.get(8))?,
        updated_at: time(row.get(9))?,
    })
}

async fn run_by_id(client: &impl GenericClient, id: i64) -> anyhow::Result<Run> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM export_runs WHERE id = $1");
    run_of(&client.query_one(&sql, &[&id]).await?)
}

fn run_of(row: &Row) -> anyhow::Result<Run> {
    let status: &str = row.get(5);
    Ok(Run {
        id: row.get(0),
        installation_id: row.get(1),
        window_start: time(row.get(2))?,
        window_end: time(row.get(3))?,
        revision: u32::try_from(row.get::<_, i64>(4)).context("a stored revision")?,
        status: RunStatus::decode(status)?,
        attempts: u32::try_from(row.get::<_, i64>(6)).context("stored attempts")?,
        reason: row.get::<_, Option<String>>(7),
        next_attempt_at: row.get::<_, Option<i64>>(8).map(time).transpose()?,
        created_at: time(row.get(9))?,
        finished_at: row.get::<_, Option<i64>>(10).map(time).transpose()?,
        figures: row
            .get::<_, Option<&str>>(11)
            .map(decode_figures)
            .transpose()?,
        claim: u32::try_from(row.get::<_, i64>(12)).context("a stored claim count")?,
    })
}

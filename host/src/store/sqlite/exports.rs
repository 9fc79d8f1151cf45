//! [`ExportStore`] on SQLite: installations, runs and documents, written by the
//! writer thread (so a claim and a finish are each one transaction).

use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::exports::NEXT_CLAIMABLE_RUN;
use crate::store::exports::{
    DocumentInfo, ExportStore, FinishedAttempt, INSTALLATION_COLUMNS, Installation, Interrupted,
    NewInstallation, RUN_COLUMNS, Run, RunEnd, RunLogRecord, RunRequestOutcome, RunStatus,
    StoredDocument, decode_figures, decode_log, encode_log, new_uid, time,
};

#[async_trait]
impl ExportStore for SqliteStore {
    async fn put_component(&self, sha256: &str, wasm: Vec<u8>) -> Result<(), StoreError> {
        let sha256 = sha256.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO adapter_components (sha256, wasm, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (sha256) DO NOTHING",
                params![sha256, wasm, Utc::now().to_rfc3339()],
            )?;
            Ok(())
        })
        .await
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha256 = sha256.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT wasm FROM adapter_components WHERE sha256 = ?1",
                    [sha256],
                    |row| row.get(0),
                )
                .optional()?)
        })
        .await
    }

    async fn create_installation(&self, new: NewInstallation) -> Result<Installation, StoreError> {
        let taken = new.name.clone();
        let created = self
            .write(move |conn| {
                let now = Utc::now().timestamp_millis();
                let inserted = conn.execute(
                    "INSERT INTO adapter_installations
                       (name, uid, manifest, component_sha256, description, enabled, watermark_ms,
                        installed_at_ms, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7, ?7)
                     ON CONFLICT (name) DO NOTHING",
                    params![
                        new.name,
                        new_uid()?,
                        new.manifest,
                        new.component_sha256,
                        serde_json::to_string(&new.description)?,
                        new.first_window.timestamp_millis(),
                        now
                    ],
                )?;
                if inserted == 0 {
                    return Ok(None);
                }
                installation_by_name(conn, &new.name)
            })
            .await?;
        created.ok_or_else(|| {
            StoreError::Exists(format!("an adapter is already installed as '{taken}'"))
        })
    }

    async fn upgrade_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Option<Installation>, StoreError> {
        self.write(move |conn| {
            let updated = conn.execute(
                "UPDATE adapter_installations
                 SET manifest = ?2, component_sha256 = ?3, description = ?4, updated_at_ms = ?5
                 WHERE name = ?1",
                params![
                    new.name,
                    new.manifest,
                    new.component_sha256,
                    serde_json::to_string(&new.description)?,
                    Utc::now().timestamp_millis()
                ],
            )?;
            if updated == 0 {
                return Ok(None);
            }
            installation_by_name(conn, &new.name)
        })
        .await
    }

    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<Installation>, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "UPDATE adapter_installations SET enabled = ?2, updated_at_ms = ?3 WHERE name = ?1",
                params![name, enabled, Utc::now().timestamp_millis()],
            )?;
            installation_by_name(conn, &name)
        })
        .await
    }

    async fn remove_installation(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM adapter_installations WHERE name = ?1",
                    [&name],
                    |row| row.get(0),
                )
                .optional()?;
            let Some(id) = id else {
                return Ok(false);
            };
            tx.execute(
                "DELETE FROM run_documents WHERE run_id IN
                   (SELECT id FROM export_runs WHERE installation_id = ?1)",
                [id],
            )?;
            tx.execute("DELETE FROM export_runs WHERE installation_id = ?1", [id])?;
            tx.execute("DELETE FROM adapter_installations WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn installation(&self, name: &str) -> Result<Option<Installation>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| installation_by_name(conn, &name))
            .await
    }

    async fn installation_by_id(&self, id: i64) -> Result<Option<Installation>, StoreError> {
        self.read(move |conn| {
            let sql =
                format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE id = ?1");
            conn.query_row(&sql, [id], |row| Ok(installation_of(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn installations(&self) -> Result<Vec<Installation>, StoreError> {
        self.read(|conn| {
            let sql =
                format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations ORDER BY name");
            let mut select = conn.prepare(&sql)?;
            let rows = select.query_map([], |row| Ok(installation_of(row)))?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn schedule_windows(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<usize, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let now = Utc::now().timestamp_millis();
            let mut queued = 0;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO export_runs
                       (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
                     VALUES (?1, ?2, ?3, 0, 'pending', ?4)
                     ON CONFLICT (installation_id, window_start_ms, revision) DO NOTHING",
                )?;
                for (start, end) in windows {
                    queued += insert.execute(params![
                        installation_id,
                        start.timestamp_millis(),
                        end.timestamp_millis(),
                        now
                    ])?;
                }
            }
            tx.commit()?;
            Ok(queued)
        })
        .await
    }

    async fn request_runs(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let now = Utc::now().timestamp_millis();
            let mut outcomes = Vec::with_capacity(windows.len());
            for (start, end) in windows {
                let latest = tx
                    .query_row(
                        "SELECT id, status, revision FROM export_runs
                         WHERE installation_id = ?1 AND window_start_ms = ?2
                         ORDER BY revision DESC LIMIT 1",
                        params![installation_id, start.timestamp_millis()],
                        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, u32>(2)?)),
                    )
                    .optional()?;
                let insert = |revision: u32| -> rusqlite::Result<i64> {
                    tx.execute(
                        "INSERT INTO export_runs
                           (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
                         VALUES (?1, ?2, ?3, ?4, 'pending', ?5)",
                        params![installation_id, start.timestamp_millis(), end.timestamp_millis(), revision, now],
                    )?;
                    Ok(tx.last_insert_rowid())
                };
                let (id, outcome) = match latest {
                    None => (insert(0)?, RunRequestOutcome::Queued),
                    Some((_, status, revision)) if status == "succeeded" => {
                        (insert(revision + 1)?, RunRequestOutcome::Correction)
                    }
                    Some((id, status, _)) if status == "failed" => {
                        tx.execute(
                            "UPDATE export_runs SET status = 'pending', attempts = 0, reason = NULL,
                               next_attempt_ms = NULL, finished_at_ms = NULL, figures = NULL,
                               log = NULL
                             WHERE id = ?1",
                            [id],
                        )?;
                        (id, RunRequestOutcome::Requeued)
                    }
                    Some((id, status, _)) if status == "retrying" => {
                        // Asked for now: no need to wait out the backoff.
                        tx.execute(
                            "UPDATE export_runs SET next_attempt_ms = ?2 WHERE id = ?1",
                            params![id, now],
                        )?;
                        (id, RunRequestOutcome::Requeued)
                    }
                    Some((id, _, _)) => (id, RunRequestOutcome::AlreadyQueued),
                };
                outcomes.push((run_by_id(&tx, id)?, outcome));
            }
            tx.commit()?;
            Ok(outcomes)
        })
        .await
    }

    fn is_shared(&self) -> bool {
        false // one host owns the file
    }

    async fn claim_run(
        &self,
        now: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StoreError> {
        let holder = holder.to_owned();
        let lease_until = lease_until(lease);
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let id: Option<i64> = tx
                .query_row(NEXT_CLAIMABLE_RUN, [now.timestamp_millis()], |row| {
                    row.get(0)
                })
                .optional()?;
            let Some(id) = id else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE export_runs SET status = 'running', attempts = attempts + 1,
                   claims = claims + 1, lease_until_ms = ?2, lease_holder = ?3
                 WHERE id = ?1",
                params![id, lease_until.timestamp_millis(), holder],
            )?;
            let run = run_by_id(&tx, id)?;
            tx.commit()?;
            Ok(Some(run))
        })
        .await
    }

    async fn renew_lease(
        &self,
        run_id: i64,
        claim: u32,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let lease_until = lease_until(lease);
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE export_runs SET lease_until_ms = ?3
                 WHERE id = ?1 AND claims = ?2 AND status = 'running'",
                params![run_id, claim, lease_until.timestamp_millis()],
            )? == 1)
        })
        .await
    }

    async fn finish_run(
        &self,
        run_id: i64,
        claim: u32,
        attempt: FinishedAttempt,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let now = Utc::now().timestamp_millis();
            let figures = serde_json::to_string(&attempt.figures)?;
            let log = encode_log(&attempt.log)?;
            let (status, reason, next_attempt) = match &attempt.end {
                RunEnd::Succeeded { .. } => (RunStatus::Succeeded, None, None),
                RunEnd::Retry { reason, at } => {
                    (RunStatus::Retrying, Some(reason.as_str()), Some(at.timestamp_millis()))
                }
                RunEnd::Failed { reason } => (RunStatus::Failed, Some(reason.as_str()), None),
            };
            // Only this attempt finishes the run: one requeued or taken over meanwhile is left alone.
            let updated = tx.execute(
                "UPDATE export_runs SET status = ?2, reason = ?3, next_attempt_ms = ?4,
                   finished_at_ms = ?5, figures = ?6, log = ?7, lease_until_ms = NULL
                 WHERE id = ?1 AND status = 'running' AND claims = ?8",
                params![run_id, status.as_str(), reason, next_attempt, now, figures, log, claim],
            )?;
            if updated == 0 {
                return Ok(false);
            }
            if let RunEnd::Succeeded { documents } = attempt.end {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO run_documents (run_id, name, content_type, bytes) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (name, document) in documents {
                    insert.execute(params![run_id, name, document.content_type, document.bytes])?;
                }
                drop(insert);
                advance_watermark(&tx, run_id)?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn requeue_interrupted_runs(
        &self,
        max_attempts: u32,
        which: Interrupted,
    ) -> Result<usize, StoreError> {
        let before = match which {
            Interrupted::LeaseEnded => Utc::now().timestamp_millis(),
            Interrupted::AllRunning => i64::MAX,
        };
        self.write(move |conn| {
            let tx = conn.transaction()?;
            // A run that keeps taking the host down with it stops being retried.
            tx.execute(
                "UPDATE export_runs SET status = 'failed', finished_at_ms = ?2, lease_until_ms = NULL,
                   reason = 'interrupted by a host stop ' || attempts || ' times; not retried again'
                 WHERE status = 'running' AND attempts >= ?1 AND coalesce(lease_until_ms, 0) < ?3",
                params![max_attempts, Utc::now().timestamp_millis(), before],
            )?;
            let requeued = tx.execute(
                "UPDATE export_runs SET status = 'pending', lease_until_ms = NULL
                 WHERE status = 'running' AND coalesce(lease_until_ms, 0) < ?1",
                [before],
            )?;
            tx.commit()?;
            Ok(requeued)
        })
        .await
    }

    async fn runs(&self, installation_id: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM export_runs WHERE installation_id = ?1
                 ORDER BY window_start_ms DESC, revision DESC LIMIT ?2"
            );
            let mut select = conn.prepare(&sql)?;
            let rows = select.query_map(params![installation_id, limit as i64], |row| {
                Ok(run_of(row))
            })?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn holding_run(&self, installation_id: i64) -> Result<Option<Run>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM export_runs
                 WHERE installation_id = ?1 AND status = 'failed' AND revision = 0
                 ORDER BY window_start_ms LIMIT 1"
            );
            conn.query_row(&sql, [installation_id], |row| Ok(run_of(row)))
                .optional()?
                .transpose()
        })
        .await
    }

    async fn run(
        &self,
        installation_id: i64,
        run_id: i64,
    ) -> Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {RUN_COLUMNS}, log FROM export_runs WHERE id = ?1 AND installation_id = ?2"
            );
            let found = conn
                .query_row(&sql, params![run_id, installation_id], |row| {
                    Ok((run_of(row), row.get::<_, Option<String>>(13)?))
                })
                .optional()?;
            let Some((run, log)) = found else {
                return Ok(None);
            };
            let log = log.map(|text| decode_log(&text)).transpose()?.unwrap_or_default();
            let mut select = conn.prepare(
                "SELECT name, content_type, length(bytes) FROM run_documents WHERE run_id = ?1 ORDER BY name",
            )?;
            let documents = select
                .query_map([run_id], |row| {
                    Ok(DocumentInfo {
                        name: row.get(0)?,
                        content_type: row.get(1)?,
                        bytes: row.get::<_, i64>(2)? as u64,
                    })
                })?
                .collect::<Result<_, _>>()?;
            Ok(Some((run?, log, documents)))
        })
        .await
    }

    async fn run_document(
        &self,
        run_id: i64,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT content_type, bytes FROM run_documents WHERE run_id = ?1 AND name = ?2",
                    params![run_id, name],
                    |row| {
                        Ok(StoredDocument {
                            content_type: row.get(0)?,
                            bytes: row.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    async fn published_runs(
        &self,
        installation_id: i64,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let document = document.to_owned();
        self.read(move |conn| {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM export_runs r
                 JOIN run_documents d ON d.run_id = r.id AND d.name = ?2
                 WHERE r.installation_id = ?1 AND r.status = 'succeeded'
                   AND r.window_start_ms >= ?3 AND r.window_start_ms < ?4
                   AND r.revision = (SELECT max(x.revision) FROM export_runs x
                                     WHERE x.installation_id = r.installation_id
                                       AND x.window_start_ms = r.window_start_ms
                                       AND x.status = 'succeeded')
                 ORDER BY r.window_start_ms",
            );
            let mut select = conn.prepare(&sql)?;
            let rows = select.query_map(
                params![
                    installation_id,
                    document,
                    from.timestamp_millis(),
                    to.timestamp_millis()
                ],
                |row| Ok(run_of(row)),
            )?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    async fn document_names(&self, installation_id: i64) -> Result<Vec<String>, StoreError> {
        self.read(move |conn| {
            let mut select = conn.prepare(
                "SELECT DISTINCT d.name FROM run_documents d JOIN export_runs r ON r.id = d.run_id
                 WHERE r.installation_id = ?1 ORDER BY d.name",
            )?;
            let names = select
                .query_map([installation_id], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(names)
        })
        .await
    }
}

/// Moves the watermark over every exported window that now follows it.
fn advance_watermark(conn: &Connection, run_id: i64) -> anyhow::Result<()> {
    let installation_id: i64 = conn.query_row(
        "SELECT installation_id FROM export_runs WHERE id = ?1",
        [run_id],
        |row| row.get(0),
    )?;
    let mut watermark: i64 = conn.query_row(
        "SELECT watermark_ms FROM adapter_installations WHERE id = ?1",
        [installation_id],
        |row| row.get(0),
    )?;
    let mut next = conn.prepare_cached(
        "SELECT window_end_ms FROM export_runs
         WHERE installation_id = ?1 AND window_start_ms = ?2 AND status = 'succeeded' LIMIT 1",
    )?;
    while let Some(end) = next
        .query_row(params![installation_id, watermark], |row| row.get(0))
        .optional()?
    {
        watermark = end;
    }
    conn.execute(
        "UPDATE adapter_installations SET watermark_ms = ?2 WHERE id = ?1",
        params![installation_id, watermark],
    )?;
    Ok(())
}

fn installation_by_name(conn: &Connection, name: &str) -> anyhow::Result<Option<Installation>> {
    let sql = format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE name = ?1");
    conn.query_row(&sql, [name], |row| Ok(installation_of(row)))
        .optional()?
        .transpose()
}

fn installation_of(row: &Row) -> anyhow::Result<Installation> {
    Ok(Installation {
        id: row.get(0)?,
        name: row.get(1)?,
        uid: row.get(2)?,
        manifest: row.get(3)?,
        component_sha256: row.get(4)?,
        description: serde_json::from_str(&row.get::<_, String>(5)?)
            .context("a stored adapter description")?,
        enabled: row.get(6)?,
        watermark: time(row.get(7)?)?,
        installed_at: time(row.get(8)?)?,
        updated_at: time(row.get(9)?)?,
    })
}

fn run_by_id(conn: &Connection, id: i64) -> anyhow::Result<Run> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM export_runs WHERE id = ?1");
    conn.query_row(&sql, [id], |row| Ok(run_of(row)))?
}

fn run_of(row: &Row) -> anyhow::Result<Run> {
    let status: String = row.get(5)?;
    let figures: Option<String> = row.get(11)?;
    Ok(Run {
        id: row.get(0)?,
        installation_id: row.get(1)?,
        window_start: time(row.get(2)?)?,
        window_end: time(row.get(3)?)?,
        revision: row.get(4)?,
        status: RunStatus::decode(&status)?,
        attempts: row.get(6)?,
        reason: row.get::<_, Option<String>>(7)?,
        next_attempt_at: row.get::<_, Option<i64>>(8)?.map(time).transpose()?,
        created_at: time(row.get(9)?)?,
        finished_at: row.get::<_, Option<i64>>(10)?.map(time).transpose()?,
        figures: figures.map(|text| decode_figures(&text)).transpose()?,
        claim: row.get(12)?,
    })
}

/// When a lease taken now for `lease` ends: one host, one clock.
fn lease_until(lease: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX)
}

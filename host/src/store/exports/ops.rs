//! The operations of [`ExportStore`](super::ExportStore), once for both
//! databases, over a [`Sql`] executor.
//!
//! Each runs in what the backend gives it: a write transaction for the
//! operations that change anything (a claim, a finish and an operator's
//! request are each atomic), a plain connection for reads. The operations
//! that change which runs are queued or running first take
//! [`Sql::lock_runs`], so they apply one after the other across replicas.
//! Finishing is fenced by the claim count instead: only the attempt that
//! holds the run can record it.

use std::time::Duration;

use anyhow::anyhow;
use chrono::{DateTime, Utc};

use super::rules::{FinishUpdate, LatestRun, RequestAction, advanced_watermark};
use super::sql::{self, LOG_COLUMN, RUN_COLUMN_COUNT};
use super::{
    DocumentInfo, FinishedAttempt, Installation, Interrupted, NewInstallation, Provenance, Run,
    RunEnd, RunLogRecord, RunRequestOutcome, StoredDocument, TenantDocument, TenantDocumentsAfter,
};
use crate::store::sql::Sql;

/// A time as stored: milliseconds since the epoch.
fn ms(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

/// A lease as added to the database's clock (capped far from overflowing).
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}

/// The host's clock, which stamps creation, update and finish times (leases
/// run on the database's).
fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A random installation uid (the stem of its run ids).
fn new_uid() -> anyhow::Result<String> {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Keeps a component's bytes under their sha256 (a no-op if present).
pub(crate) async fn put_component(
    db: &impl Sql,
    sha256: &str,
    wasm: Vec<u8>,
) -> anyhow::Result<()> {
    let added_at = Utc::now().to_rfc3339();
    db.execute(
        sql::PUT_COMPONENT,
        &[sha256.into(), wasm.into(), added_at.into()],
    )
    .await?;
    Ok(())
}

/// A component's bytes.
pub(crate) async fn component(db: &impl Sql, sha256: &str) -> anyhow::Result<Option<Vec<u8>>> {
    db.query_opt(sql::COMPONENT, &[sha256.into()])
        .await?
        .map(|mut row| row.take(0))
        .transpose()
}

/// Creates an installation; `None` when the name is taken (ignoring case).
pub(crate) async fn create_installation(
    db: &impl Sql,
    new: NewInstallation,
) -> anyhow::Result<Option<Installation>> {
    let inserted = db
        .execute(
            sql::CREATE_INSTALLATION,
            &[
                new.name.as_str().into(),
                new_uid()?.into(),
                new.manifest.into(),
                new.component_sha256.into(),
                serde_json::to_string(&new.description)?.into(),
                ms(new.first_window).into(),
                now_ms().into(),
                new.publish_to_tenants.into(),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(None);
    }
    installation(db, &new.name).await
}

/// Replaces an installation's manifest, component and description.
pub(crate) async fn upgrade_installation(
    db: &impl Sql,
    new: NewInstallation,
) -> anyhow::Result<Option<Installation>> {
    let updated = db
        .execute(
            &sql::upgrade_installation(db.dialect()),
            &[
                new.name.as_str().into(),
                new.manifest.into(),
                new.component_sha256.into(),
                serde_json::to_string(&new.description)?.into(),
                now_ms().into(),
                new.publish_to_tenants.into(),
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(None);
    }
    installation(db, &new.name).await
}

/// Enables or disables an installation.
pub(crate) async fn set_enabled(
    db: &impl Sql,
    name: &str,
    enabled: bool,
) -> anyhow::Result<Option<Installation>> {
    db.execute(
        &sql::set_enabled(db.dialect()),
        &[name.into(), enabled.into(), now_ms().into()],
    )
    .await?;
    installation(db, name).await
}

/// Deletes an installation with its runs and documents; `false` if none.
pub(crate) async fn remove_installation(db: &impl Sql, name: &str) -> anyhow::Result<bool> {
    let Some(mut row) = db
        .query_opt(&sql::installation_id(db.dialect()), &[name.into()])
        .await?
    else {
        return Ok(false);
    };
    let id: i64 = row.take(0)?;
    for statement in sql::REMOVE_INSTALLATION {
        db.execute(statement, &[id.into()]).await?;
    }
    db.execute(sql::FORGET_UNUSED_CONFIGS, &[]).await?;
    Ok(true)
}

/// An installation by name (ignoring case).
pub(crate) async fn installation(
    db: &impl Sql,
    name: &str,
) -> anyhow::Result<Option<Installation>> {
    db.query_opt(&sql::installation_by_name(db.dialect()), &[name.into()])
        .await?
        .map(sql::installation_of)
        .transpose()
}

/// An installation by id.
pub(crate) async fn installation_by_id(
    db: &impl Sql,
    id: i64,
) -> anyhow::Result<Option<Installation>> {
    db.query_opt(&sql::installation_by_id(), &[id.into()])
        .await?
        .map(sql::installation_of)
        .transpose()
}

/// All installations, by name (ignoring case).
pub(crate) async fn installations(db: &impl Sql) -> anyhow::Result<Vec<Installation>> {
    db.query(&sql::installations(db.dialect()), &[])
        .await?
        .into_iter()
        .map(sql::installation_of)
        .collect()
}

/// Queues the first export of each window that has none; how many were
/// queued. The unique (installation, window, revision) makes a second first
/// export impossible whoever queues it; the lock keeps an operator's request
/// for the same window from colliding with it.
pub(crate) async fn schedule_windows(
    db: &impl Sql,
    installation_id: i64,
    windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> anyhow::Result<usize> {
    db.lock_runs().await?;
    let now = now_ms();
    let mut queued = 0;
    for (start, end) in windows {
        queued += db
            .execute(
                sql::SCHEDULE_WINDOW,
                &[
                    installation_id.into(),
                    ms(start).into(),
                    ms(end).into(),
                    now.into(),
                ],
            )
            .await?;
    }
    Ok(queued as usize)
}

/// An operator's run of each window (see [`RequestAction`]).
pub(crate) async fn request_runs(
    db: &impl Sql,
    installation_id: i64,
    windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
) -> anyhow::Result<Vec<(Run, RunRequestOutcome)>> {
    db.lock_runs().await?;
    let now = now_ms();
    let mut outcomes = Vec::with_capacity(windows.len());
    for (start, end) in windows {
        let latest = db
            .query_opt(
                sql::LATEST_RUN_OF_WINDOW,
                &[installation_id.into(), ms(start).into()],
            )
            .await?
            .map(|mut row| {
                anyhow::Ok(LatestRun {
                    id: row.take(0)?,
                    status: sql::status_of(row.take(1)?)?,
                    revision: row.take(2)?,
                })
            })
            .transpose()?;
        let action = RequestAction::for_latest(latest);
        let id = match action {
            RequestAction::Insert { revision } => db
                .query_one(
                    sql::INSERT_RUN,
                    &[
                        installation_id.into(),
                        ms(start).into(),
                        ms(end).into(),
                        revision.into(),
                        now.into(),
                    ],
                )
                .await?
                .take(0)?,
            RequestAction::Reset(id) => {
                db.execute(sql::RESET_RUN, &[id.into()]).await?;
                id
            }
            RequestAction::Hasten(id) => {
                db.execute(sql::HASTEN_RUN, &[id.into(), now.into()])
                    .await?;
                id
            }
            RequestAction::Keep(id) => id,
        };
        outcomes.push((run_by_id(db, id).await?, action.outcome()));
    }
    Ok(outcomes)
}

/// Takes the next run that may start at `now`, leased to `holder` for
/// `lease` of the database's clock.
pub(crate) async fn claim_run(
    db: &impl Sql,
    now: DateTime<Utc>,
    holder: &str,
    lease: Duration,
) -> anyhow::Result<Option<Run>> {
    db.lock_runs().await?;
    db.query_opt(
        &sql::claim_run(db.dialect()),
        &[ms(now).into(), millis(lease).into(), holder.into()],
    )
    .await?
    .map(|mut row| sql::run_of(&mut row))
    .transpose()
}

/// Extends claim `claim`'s lease on a run; `false` when the run is no longer
/// that claim's.
pub(crate) async fn renew_lease(
    db: &impl Sql,
    run_id: i64,
    claim: u32,
    lease: Duration,
) -> anyhow::Result<bool> {
    let updated = db
        .execute(
            &sql::renew_lease(db.dialect()),
            &[run_id.into(), claim.into(), millis(lease).into()],
        )
        .await?;
    Ok(updated == 1)
}

/// Records how claim `claim`'s attempt ended; on success publishes the
/// documents and advances the watermark. `false`, recording nothing, when
/// the run is no longer that claim's.
pub(crate) async fn finish_run(
    db: &impl Sql,
    run_id: i64,
    claim: u32,
    attempt: FinishedAttempt,
) -> anyhow::Result<bool> {
    let update = FinishUpdate::of(&attempt.end);
    let finished = db
        .query_opt(
            sql::FINISH_RUN,
            &[
                run_id.into(),
                update.status.as_str().into(),
                update.reason.into(),
                update.next_attempt.map(ms).into(),
                now_ms().into(),
                serde_json::to_string(&attempt.figures)?.into(),
                sql::encode_log(&attempt.log)?.into(),
                claim.into(),
                i64::from(!update.counted).into(),
            ],
        )
        .await?;
    let Some(mut finished) = finished else {
        return Ok(false);
    };
    if let RunEnd::Succeeded {
        documents,
        provenance,
        config_json,
    } = attempt.end
    {
        for (name, document) in documents {
            db.execute(
                sql::INSERT_DOCUMENT,
                &[
                    run_id.into(),
                    name.into(),
                    document.content_type.into(),
                    document.bytes.into(),
                    document.subscription_id.into(),
                    document.sha256.into(),
                ],
            )
            .await?;
        }
        record_provenance(db, run_id, provenance, config_json).await?;
        advance_watermark(db, finished.take(0)?).await?;
    }
    Ok(true)
}

/// Records how a succeeded run's documents were made, and keeps the
/// configuration it ran with under its digest.
async fn record_provenance(
    db: &impl Sql,
    run_id: i64,
    provenance: Provenance,
    config_json: String,
) -> anyhow::Result<()> {
    db.execute(
        sql::PUT_CONFIG,
        &[provenance.config_sha256.as_str().into(), config_json.into()],
    )
    .await?;
    db.execute(
        sql::SET_PROVENANCE,
        &[
            run_id.into(),
            provenance.world_version.into(),
            provenance.component_sha256.into(),
            provenance.config_sha256.into(),
            provenance.config_digest.into(),
            sql::granularity_name(provenance.granularity).into(),
            provenance.usage_sha256.into(),
        ],
    )
    .await?;
    Ok(())
}

/// Moves an installation's watermark over every exported window that now
/// follows it.
async fn advance_watermark(db: &impl Sql, installation_id: i64) -> anyhow::Result<()> {
    let watermark: i64 = db
        .query_one(&sql::watermark(db.dialect()), &[installation_id.into()])
        .await?
        .take(0)?;
    let succeeded = db
        .query(
            sql::SUCCEEDED_WINDOWS_FROM,
            &[installation_id.into(), watermark.into()],
        )
        .await?
        .into_iter()
        .map(|mut row| anyhow::Ok((row.take(0)?, row.take(1)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let advanced = advanced_watermark(watermark, succeeded);
    if advanced != watermark {
        db.execute(
            sql::SET_WATERMARK,
            &[installation_id.into(), advanced.into()],
        )
        .await?;
    }
    Ok(())
}

/// Queues again the runs left running by a host that stopped, or fails
/// those that have started `max_attempts` times; how many were queued.
pub(crate) async fn requeue_interrupted_runs(
    db: &impl Sql,
    max_attempts: u32,
    which: Interrupted,
) -> anyhow::Result<usize> {
    db.lock_runs().await?;
    let dialect = db.dialect();
    db.execute(
        &sql::fail_interrupted(dialect, which),
        &[max_attempts.into(), now_ms().into()],
    )
    .await?;
    let requeued = db
        .execute(&sql::requeue_interrupted(dialect, which), &[])
        .await?;
    Ok(requeued as usize)
}

async fn run_by_id(db: &impl Sql, id: i64) -> anyhow::Result<Run> {
    sql::run_of(&mut db.query_one(&sql::run_by_id(), &[id.into()]).await?)
}

/// Runs of an installation, newest window first.
pub(crate) async fn runs(
    db: &impl Sql,
    installation_id: i64,
    limit: usize,
) -> anyhow::Result<Vec<Run>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.query(&sql::runs(), &[installation_id.into(), limit.into()])
        .await?
        .iter_mut()
        .map(sql::run_of)
        .collect()
}

/// The earliest failed first export of an installation.
pub(crate) async fn holding_run(
    db: &impl Sql,
    installation_id: i64,
) -> anyhow::Result<Option<Run>> {
    db.query_opt(&sql::holding_run(), &[installation_id.into()])
        .await?
        .map(|mut row| sql::run_of(&mut row))
        .transpose()
}

/// A run of an installation, with its log and documents.
pub(crate) async fn run(
    db: &impl Sql,
    installation_id: i64,
    run_id: i64,
) -> anyhow::Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>> {
    let Some(mut row) = db
        .query_opt(
            &sql::run_with_log(),
            &[run_id.into(), installation_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let log = row
        .take::<Option<String>>(LOG_COLUMN)?
        .map(|text| sql::decode_log(&text))
        .transpose()?
        .unwrap_or_default();
    let documents = db
        .query(&sql::documents_of_run(db.dialect()), &[run_id.into()])
        .await?
        .iter_mut()
        .map(|document| sql::document_info_of(document, 0))
        .collect::<anyhow::Result<Vec<DocumentInfo>>>()?;
    Ok(Some((sql::run_of(&mut row)?, log, documents)))
}

/// A document of a run.
pub(crate) async fn run_document(
    db: &impl Sql,
    run_id: i64,
    name: &str,
) -> anyhow::Result<Option<StoredDocument>> {
    db.query_opt(sql::RUN_DOCUMENT, &[run_id.into(), name.into()])
        .await?
        .map(sql::document_of)
        .transpose()
}

/// For each window starting in `[from, to)`, its latest succeeded revision,
/// in window order; at most `limit`.
pub(crate) async fn succeeded_runs(
    db: &impl Sql,
    installation_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<Vec<Run>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.query(
        &sql::succeeded_runs(),
        &[
            installation_id.into(),
            ms(from).into(),
            ms(to).into(),
            limit.into(),
        ],
    )
    .await?
    .iter_mut()
    .map(sql::run_of)
    .collect()
}

/// For each window starting in `[from, to)`, its latest succeeded revision
/// if that published `document`, in window order.
pub(crate) async fn published_runs(
    db: &impl Sql,
    installation_id: i64,
    document: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<Run>> {
    db.query(
        &sql::published_runs(),
        &[
            installation_id.into(),
            document.into(),
            ms(from).into(),
            ms(to).into(),
        ],
    )
    .await?
    .iter_mut()
    .map(sql::run_of)
    .collect()
}

/// Names of the documents published by an installation's runs, bytewise.
pub(crate) async fn document_names(
    db: &impl Sql,
    installation_id: i64,
) -> anyhow::Result<Vec<String>> {
    db.query(
        &sql::document_names(db.dialect()),
        &[installation_id.into()],
    )
    .await?
    .into_iter()
    .map(|mut row| row.take(0))
    .collect()
}

/// The configuration JSON kept under `config_sha256`.
pub(crate) async fn run_config(
    db: &impl Sql,
    config_sha256: &str,
) -> anyhow::Result<Option<String>> {
    db.query_opt(sql::RUN_CONFIG, &[config_sha256.into()])
        .await?
        .map(|mut row| row.take(0))
        .transpose()
}

/// The documents published to `subscription_id` (see
/// [`ExportStore::tenant_documents`](super::ExportStore::tenant_documents)).
pub(crate) async fn tenant_documents(
    db: &impl Sql,
    subscription_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    after: Option<TenantDocumentsAfter>,
    limit: usize,
) -> anyhow::Result<Vec<TenantDocument>> {
    // Without a page before it, the listing starts before every window.
    let after = after.unwrap_or(TenantDocumentsAfter {
        window_start: DateTime::<Utc>::MAX_UTC,
        installation_id: i64::MAX,
        name: String::new(),
    });
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.query(
        &sql::tenant_documents(db.dialect()),
        &[
            subscription_id.into(),
            ms(from).into(),
            ms(to).into(),
            ms(after.window_start).into(),
            after.installation_id.into(),
            after.name.into(),
            limit.into(),
        ],
    )
    .await?
    .iter_mut()
    .map(|row| {
        Ok(TenantDocument {
            run: sql::run_of(row)?,
            adapter: row.take(RUN_COLUMN_COUNT)?,
            document: sql::document_info_of(row, RUN_COLUMN_COUNT + 1)?,
        })
    })
    .collect()
}

/// A document of a run of an installation that publishes to tenants, if
/// `subscription_id` owns it.
pub(crate) async fn tenant_run_document(
    db: &impl Sql,
    installation_id: i64,
    run_id: i64,
    name: &str,
    subscription_id: &str,
) -> anyhow::Result<Option<StoredDocument>> {
    db.query_opt(
        &sql::tenant_run_document(db.dialect()),
        &[
            installation_id.into(),
            run_id.into(),
            name.into(),
            subscription_id.into(),
        ],
    )
    .await?
    .map(sql::document_of)
    .transpose()
}

/// [`published_runs`] whose `document` `subscription_id` owns, of an
/// installation that publishes to tenants.
pub(crate) async fn tenant_published_runs(
    db: &impl Sql,
    installation_id: i64,
    document: &str,
    subscription_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<Run>> {
    db.query(
        &sql::tenant_published_runs(db.dialect()),
        &[
            installation_id.into(),
            document.into(),
            ms(from).into(),
            ms(to).into(),
            subscription_id.into(),
        ],
    )
    .await?
    .iter_mut()
    .map(sql::run_of)
    .collect()
}

/// Whether a run of an installation that publishes to tenants published
/// `document` to `subscription_id`.
pub(crate) async fn tenant_document_published(
    db: &impl Sql,
    installation_id: i64,
    document: &str,
    subscription_id: &str,
) -> anyhow::Result<bool> {
    db.query_one(
        &sql::tenant_document_published(db.dialect()),
        &[
            installation_id.into(),
            document.into(),
            subscription_id.into(),
        ],
    )
    .await?
    .take(0)
}

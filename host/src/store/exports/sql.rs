//! The statements of [`super::ops`], written once for both databases (the
//! few spellings that differ come from [`Dialect`]), and how their columns
//! read and write.

use anyhow::Context;

use super::LogLine;
use super::{
    DocumentInfo, Installation, Interrupted, Provenance, Run, RunFiguresRecord, RunLogRecord,
    RunStatus, StoredDocument, sha256_hex, time,
};
use crate::store::CorruptValue;
use crate::store::sql::{Dialect, Row};
use crate::usage::Granularity;

/// Keeps a component unless one with its sha256 is kept.
pub(super) const PUT_COMPONENT: &str =
    "INSERT INTO adapter_components (sha256, wasm, added_at) VALUES ($1, $2, $3)
     ON CONFLICT (sha256) DO NOTHING";

/// A component's bytes.
pub(super) const COMPONENT: &str = "SELECT wasm FROM adapter_components WHERE sha256 = $1";

/// Inserts nothing when the name is taken (its unique index is the only one
/// an insert can conflict with).
pub(super) const CREATE_INSTALLATION: &str = "INSERT INTO adapter_installations
       (name, uid, manifest, component_sha256, description, enabled, watermark_ms,
        installed_at_ms, updated_at_ms, publish_to_tenants)
     VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $7, $8)
     ON CONFLICT DO NOTHING";

/// Replaces the manifest, component, description and publication of the
/// installation named `$1`.
pub(super) fn upgrade_installation(dialect: Dialect) -> String {
    format!(
        "UPDATE adapter_installations
         SET manifest = $2, component_sha256 = $3, description = $4, updated_at_ms = $5,
           publish_to_tenants = $6
         WHERE {}",
        named(dialect)
    )
}

/// Enables or disables the installation named `$1`.
pub(super) fn set_enabled(dialect: Dialect) -> String {
    format!(
        "UPDATE adapter_installations SET enabled = $2, updated_at_ms = $3 WHERE {}",
        named(dialect)
    )
}

/// The id of the installation named `$1`.
pub(super) fn installation_id(dialect: Dialect) -> String {
    format!(
        "SELECT id FROM adapter_installations WHERE {}",
        named(dialect)
    )
}

/// An installation's documents, runs and itself, in that order (by hand, not
/// by cascade, so that neither database's foreign keys need be relied on).
pub(super) const REMOVE_INSTALLATION: [&str; 3] = [
    "DELETE FROM run_documents WHERE run_id IN
       (SELECT id FROM export_runs WHERE installation_id = $1)",
    "DELETE FROM export_runs WHERE installation_id = $1",
    "DELETE FROM adapter_installations WHERE id = $1",
];

/// Deletes the configurations no run names any more: they hold secrets,
/// kept no longer than a run that used them.
pub(super) const FORGET_UNUSED_CONFIGS: &str = "DELETE FROM export_configs WHERE sha256 NOT IN
       (SELECT config_sha256 FROM export_runs WHERE config_sha256 IS NOT NULL)";

/// The installation named `$1`.
pub(super) fn installation_by_name(dialect: Dialect) -> String {
    format!(
        "SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE {}",
        named(dialect)
    )
}

/// The installation with id `$1`.
pub(super) fn installation_by_id() -> String {
    format!("SELECT {INSTALLATION_COLUMNS} FROM adapter_installations WHERE id = $1")
}

/// Every installation, by name.
pub(super) fn installations(dialect: Dialect) -> String {
    format!(
        "SELECT {INSTALLATION_COLUMNS} FROM adapter_installations ORDER BY {}",
        dialect.fold("name")
    )
}

/// The installation named `$1`, ignoring case.
fn named(dialect: Dialect) -> String {
    format!("{} = {}", dialect.fold("name"), dialect.fold("$1"))
}

/// Queues the first export of a window unless it has one.
pub(super) const SCHEDULE_WINDOW: &str = "INSERT INTO export_runs
       (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
     VALUES ($1, $2, $3, 0, 'pending', $4)
     ON CONFLICT (installation_id, window_start_ms, revision) DO NOTHING";

/// The latest revision of the window of installation `$1` starting at `$2`.
pub(super) const LATEST_RUN_OF_WINDOW: &str = "SELECT id, status, revision FROM export_runs
     WHERE installation_id = $1 AND window_start_ms = $2
     ORDER BY revision DESC LIMIT 1";

/// Queues a revision of a window; its id.
pub(super) const INSERT_RUN: &str = "INSERT INTO export_runs
       (installation_id, window_start_ms, window_end_ms, revision, status, created_at_ms)
     VALUES ($1, $2, $3, $4, 'pending', $5) RETURNING id";

/// A failed run queued again as if new (same id).
pub(super) const RESET_RUN: &str =
    "UPDATE export_runs SET status = 'pending', attempts = 0, reason = NULL,
       next_attempt_ms = NULL, finished_at_ms = NULL, figures = NULL, log = NULL,
       world_version = NULL, component_sha256 = NULL, config_sha256 = NULL,
       config_digest = NULL, granularity = NULL, usage_sha256 = NULL
     WHERE id = $1";

/// Lets a retrying run start at `$2` (now).
pub(super) const HASTEN_RUN: &str = "UPDATE export_runs SET next_attempt_ms = $2 WHERE id = $1";

/// The id of the next run that may start at `$1` (ms), the rule of
/// [`ExportStore::claim_run`](super::ExportStore::claim_run): per
/// installation, windows go one at a time and in order, and an unresolved
/// failed first export holds every window after it.
const NEXT_CLAIMABLE_RUN: &str = "SELECT r.id FROM export_runs r
     JOIN adapter_installations i ON i.id = r.installation_id
     WHERE i.enabled
       AND (r.status = 'pending' OR (r.status = 'retrying' AND r.next_attempt_ms <= $1))
       AND NOT EXISTS (
         SELECT 1 FROM export_runs o
         WHERE o.installation_id = r.installation_id AND o.id <> r.id
           AND (o.status = 'running'
                OR (o.status IN ('pending', 'retrying')
                    AND (o.window_start_ms, o.revision) < (r.window_start_ms, r.revision))
                OR (o.status = 'failed' AND o.revision = 0
                    AND o.window_start_ms < r.window_start_ms)))
     ORDER BY r.window_start_ms, r.revision, r.id
     LIMIT 1";

/// Marks the next claimable run running, leased to `$3` for `$2` ms of the
/// database's clock.
pub(super) fn claim_run(dialect: Dialect) -> String {
    format!(
        "UPDATE export_runs SET status = 'running', attempts = attempts + 1,
           claims = claims + 1, lease_until_ms = {} + $2, lease_holder = $3
         WHERE id = ({NEXT_CLAIMABLE_RUN})
         RETURNING {RUN_COLUMNS}",
        dialect.now_ms()
    )
}

/// Extends the lease of run `$1` to `$3` ms from now, if claim `$2` holds it.
pub(super) fn renew_lease(dialect: Dialect) -> String {
    format!(
        "UPDATE export_runs SET lease_until_ms = {} + $3
         WHERE id = $1 AND claims = $2 AND status = 'running'",
        dialect.now_ms()
    )
}

/// Records the end of claim `$8`'s attempt, if that claim still holds the
/// run; `$9` is 1 to give the attempt back (the claim counted it).
pub(super) const FINISH_RUN: &str =
    "UPDATE export_runs SET status = $2, reason = $3, next_attempt_ms = $4,
       finished_at_ms = $5, figures = $6, log = $7, lease_until_ms = NULL,
       attempts = attempts - $9
     WHERE id = $1 AND status = 'running' AND claims = $8
     RETURNING installation_id";

/// Publishes a document of a succeeded run.
pub(super) const INSERT_DOCUMENT: &str = "INSERT INTO run_documents
       (run_id, name, content_type, bytes, subscription_id, sha256)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Records how succeeded run `$1`'s documents were made.
pub(super) const SET_PROVENANCE: &str =
    "UPDATE export_runs SET world_version = $2, component_sha256 = $3, config_sha256 = $4,
       config_digest = $5, granularity = $6, usage_sha256 = $7
     WHERE id = $1";

/// Keeps a configuration under its sha256 unless one is kept.
pub(super) const PUT_CONFIG: &str = "INSERT INTO export_configs (sha256, config) VALUES ($1, $2)
     ON CONFLICT (sha256) DO NOTHING";

/// The configuration kept under sha256 `$1`.
pub(super) const RUN_CONFIG: &str = "SELECT config FROM export_configs WHERE sha256 = $1";

/// An installation's watermark, locked until the transaction ends.
pub(super) fn watermark(dialect: Dialect) -> String {
    format!(
        "SELECT watermark_ms FROM adapter_installations WHERE id = $1{}",
        dialect.for_update()
    )
}

/// The succeeded windows of installation `$1` from `$2` on, in order.
pub(super) const SUCCEEDED_WINDOWS_FROM: &str =
    "SELECT window_start_ms, window_end_ms FROM export_runs
     WHERE installation_id = $1 AND window_start_ms >= $2 AND status = 'succeeded'
     ORDER BY window_start_ms";

/// Moves an installation's watermark.
pub(super) const SET_WATERMARK: &str =
    "UPDATE adapter_installations SET watermark_ms = $2 WHERE id = $1";

/// Running runs that count as interrupted.
fn interrupted(dialect: Dialect, which: Interrupted) -> String {
    match which {
        Interrupted::LeaseEnded => format!("coalesce(lease_until_ms, 0) < {}", dialect.now_ms()),
        Interrupted::AllRunning => "TRUE".to_owned(),
    }
}

/// Fails the interrupted runs that have started `$1` times, at `$2` (ms): a
/// run that keeps taking its host down with it stops being retried.
pub(super) fn fail_interrupted(dialect: Dialect, which: Interrupted) -> String {
    format!(
        "UPDATE export_runs SET status = 'failed', finished_at_ms = $2, lease_until_ms = NULL,
           reason = 'interrupted by a host stop ' || attempts || ' times; not retried again'
         WHERE status = 'running' AND attempts >= $1 AND {}",
        interrupted(dialect, which)
    )
}

/// Queues the other interrupted runs again.
pub(super) fn requeue_interrupted(dialect: Dialect, which: Interrupted) -> String {
    format!(
        "UPDATE export_runs SET status = 'pending', lease_until_ms = NULL
         WHERE status = 'running' AND {}",
        interrupted(dialect, which)
    )
}

/// The run with id `$1`.
pub(super) fn run_by_id() -> String {
    format!("SELECT {RUN_COLUMNS} FROM export_runs WHERE id = $1")
}

/// The `$2` runs of installation `$1` with the newest windows.
pub(super) fn runs() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM export_runs WHERE installation_id = $1
         ORDER BY window_start_ms DESC, revision DESC LIMIT $2"
    )
}

/// The earliest failed first export of installation `$1`.
pub(super) fn holding_run() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM export_runs
         WHERE installation_id = $1 AND status = 'failed' AND revision = 0
         ORDER BY window_start_ms LIMIT 1"
    )
}

/// A run with its log, the column after [`RUN_COLUMNS`].
pub(super) fn run_with_log() -> String {
    format!("SELECT {RUN_COLUMNS}, log FROM export_runs WHERE id = $1 AND installation_id = $2")
}

/// The documents of run `$1`, without their bytes, by name: the columns
/// [`document_info_of`] reads.
pub(super) fn documents_of_run(dialect: Dialect) -> String {
    format!(
        "SELECT name, content_type, length(bytes), subscription_id, sha256 FROM run_documents
         WHERE run_id = $1 ORDER BY {}",
        dialect.bytewise("name")
    )
}

/// Document `$2` of run `$1`.
pub(super) const RUN_DOCUMENT: &str = "SELECT content_type, bytes, subscription_id, sha256
     FROM run_documents WHERE run_id = $1 AND name = $2";

/// The ids of the installations that publish to tenants.
const PUBLISHING: &str = "SELECT id FROM adapter_installations WHERE publish_to_tenants";

/// Whether run `r`'s window has no later succeeded revision.
const LATEST_SUCCEEDED: &str = "r.status = 'succeeded'
       AND r.revision = (SELECT max(x.revision) FROM export_runs x
                         WHERE x.installation_id = r.installation_id
                           AND x.window_start_ms = r.window_start_ms
                           AND x.status = 'succeeded')";

/// Whether document `d` belongs to the subscription `param` names (ignoring case).
fn owned_by(dialect: Dialect, param: &str) -> String {
    format!(
        "d.subscription_id IS NOT NULL AND {} = {}",
        dialect.fold("d.subscription_id"),
        dialect.fold(param)
    )
}

/// The documents published to subscription `$1` for windows starting in
/// `[$2, $3)`, newest window first, then by installation and name, after
/// (`$4` window, `$5` installation, `$6` name), at most `$7`: the
/// [`RUN_COLUMNS`], the installation's name, then [`document_info_of`]'s.
pub(super) fn tenant_documents(dialect: Dialect) -> String {
    let name = dialect.bytewise("d.name");
    format!(
        "SELECT {RUN_COLUMNS},
           (SELECT i.name FROM adapter_installations i WHERE i.id = r.installation_id),
           d.name, d.content_type, length(d.bytes), d.subscription_id, d.sha256
         FROM run_documents d JOIN export_runs r ON r.id = d.run_id
         WHERE {owned} AND {LATEST_SUCCEEDED}
           AND r.window_start_ms >= $2 AND r.window_start_ms < $3
           AND r.installation_id IN ({PUBLISHING})
           AND (r.window_start_ms < $4
                OR (r.window_start_ms = $4
                    AND (r.installation_id > $5
                         OR (r.installation_id = $5 AND {name} > $6))))
         ORDER BY r.window_start_ms DESC, r.installation_id, {name}
         LIMIT $7",
        owned = owned_by(dialect, "$1"),
    )
}

/// Document `$3` of run `$2` of installation `$1`, if the installation
/// publishes to tenants and subscription `$4` owns it.
pub(super) fn tenant_run_document(dialect: Dialect) -> String {
    format!(
        "SELECT d.content_type, d.bytes, d.subscription_id, d.sha256
         FROM run_documents d JOIN export_runs r ON r.id = d.run_id
         WHERE r.installation_id = $1 AND r.id = $2 AND d.name = $3 AND {}
           AND r.installation_id IN ({PUBLISHING})",
        owned_by(dialect, "$4")
    )
}

/// [`published_runs`] whose document subscription `$5` owns, of an
/// installation that publishes to tenants.
pub(super) fn tenant_published_runs(dialect: Dialect) -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM export_runs r
         JOIN run_documents d ON d.run_id = r.id AND d.name = $2
         WHERE r.installation_id = $1 AND {LATEST_SUCCEEDED}
           AND r.window_start_ms >= $3 AND r.window_start_ms < $4
           AND {} AND r.installation_id IN ({PUBLISHING})
         ORDER BY r.window_start_ms",
        owned_by(dialect, "$5")
    )
}

/// Whether a run of installation `$1`, which publishes to tenants, published
/// document `$2` to subscription `$3`.
pub(super) fn tenant_document_published(dialect: Dialect) -> String {
    format!(
        "SELECT EXISTS (SELECT 1 FROM run_documents d JOIN export_runs r ON r.id = d.run_id
           WHERE r.installation_id = $1 AND d.name = $2 AND {}
             AND r.installation_id IN ({PUBLISHING}))",
        owned_by(dialect, "$3")
    )
}

/// For each window starting in `[$3, $4)`, its latest succeeded revision if
/// that published document `$2`.
pub(super) fn published_runs() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM export_runs r
         JOIN run_documents d ON d.run_id = r.id AND d.name = $2
         WHERE r.installation_id = $1 AND {LATEST_SUCCEEDED}
           AND r.window_start_ms >= $3 AND r.window_start_ms < $4
         ORDER BY r.window_start_ms"
    )
}

/// For each window of installation `$1` starting in `[$2, $3)`, its latest
/// succeeded revision, in window order; at most `$4`.
pub(super) fn succeeded_runs() -> String {
    format!(
        "SELECT {RUN_COLUMNS} FROM export_runs r
         WHERE r.installation_id = $1 AND {LATEST_SUCCEEDED}
           AND r.window_start_ms >= $2 AND r.window_start_ms < $3
         ORDER BY r.window_start_ms LIMIT $4"
    )
}

/// The names of the documents of installation `$1`'s runs, bytewise.
pub(super) fn document_names(dialect: Dialect) -> String {
    format!(
        "SELECT DISTINCT {} FROM run_documents d JOIN export_runs r ON r.id = d.run_id
         WHERE r.installation_id = $1 ORDER BY 1",
        dialect.bytewise("d.name")
    )
}

/// The columns an [`Installation`] is read from, in order.
const INSTALLATION_COLUMNS: &str = "id, name, uid, manifest, component_sha256, \
     description, enabled, watermark_ms, installed_at_ms, updated_at_ms, publish_to_tenants";

/// The columns a [`Run`] is read from, in order (unqualified: they name no
/// column of `run_documents`, the one table runs are joined with).
///
/// The failure reason is cut by the database, so no listing ever reads more
/// than [`MAX_REASON_BYTES`](super::MAX_REASON_BYTES) +
/// 64 bytes of one: reasons are cut to that bound (and marked) before they
/// are stored, but an older
/// version stored them whole. Such a reason is served as its first 1,024
/// characters (at most 4 KiB) and the marker, with its stored length.
/// `octet_length` reads the stored size without the text on PostgreSQL.
const RUN_COLUMNS: &str = "id, installation_id, window_start_ms, window_end_ms, \
     revision, status, attempts, \
     CASE WHEN octet_length(reason) > 4160 \
          THEN substr(reason, 1, 1024) || '… [truncated: ' || octet_length(reason) || ' bytes]' \
          ELSE reason END AS reason, \
     next_attempt_ms, created_at_ms, finished_at_ms, figures, claims, \
     world_version, component_sha256, config_sha256, config_digest, granularity, usage_sha256";

/// How many [`RUN_COLUMNS`] there are: the column of a run's log in
/// [`run_with_log`], the first after them in [`tenant_documents`].
pub(super) const RUN_COLUMN_COUNT: usize = 19;

/// The column of a run's log in [`run_with_log`].
pub(super) const LOG_COLUMN: usize = RUN_COLUMN_COUNT;

/// Reads a row of [`INSTALLATION_COLUMNS`].
pub(super) fn installation_of(mut row: Row) -> anyhow::Result<Installation> {
    Ok(Installation {
        id: row.take(0)?,
        name: row.take(1)?,
        uid: row.take(2)?,
        manifest: row.take(3)?,
        component_sha256: row.take(4)?,
        description: serde_json::from_str(&row.take::<String>(5)?)
            .context("a stored adapter description")?,
        enabled: row.take(6)?,
        watermark: time(row.take(7)?)?,
        installed_at: time(row.take(8)?)?,
        updated_at: time(row.take(9)?)?,
        publish_to_tenants: row.take(10)?,
    })
}

/// Reads the [`RUN_COLUMNS`] of a row.
pub(super) fn run_of(row: &mut Row) -> anyhow::Result<Run> {
    Ok(Run {
        id: row.take(0)?,
        installation_id: row.take(1)?,
        window_start: time(row.take(2)?)?,
        window_end: time(row.take(3)?)?,
        revision: row.take(4).context("a stored revision")?,
        status: status_of(row.take(5)?)?,
        attempts: row.take(6).context("stored attempts")?,
        reason: row.take(7)?,
        next_attempt_at: row.take::<Option<i64>>(8)?.map(time).transpose()?,
        created_at: time(row.take(9)?)?,
        finished_at: row.take::<Option<i64>>(10)?.map(time).transpose()?,
        figures: row
            .take::<Option<String>>(11)?
            .map(|text| decode_figures(&text))
            .transpose()?,
        claim: row.take(12).context("a stored claim count")?,
        provenance: provenance_of(row)?,
    })
}

/// Reads the provenance columns of [`RUN_COLUMNS`]: all NULL (a run that has
/// not succeeded, or succeeded before provenance was kept), or all set.
fn provenance_of(row: &mut Row) -> anyhow::Result<Option<Provenance>> {
    let mut texts = (13..19)
        .map(|index| row.take::<Option<String>>(index))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if texts.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut next = || {
        texts.remove(0).ok_or_else(|| {
            CorruptValue::error("a run's provenance", "some of its columns are NULL")
        })
    };
    Ok(Some(Provenance {
        world_version: next()?,
        component_sha256: next()?,
        config_sha256: next()?,
        config_digest: next()?,
        granularity: granularity_of(&next()?)?,
        usage_sha256: next()?,
    }))
}

/// A granularity as stored.
pub(super) fn granularity_name(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::Hourly => "hourly",
        Granularity::Daily => "daily",
    }
}

/// Reads a stored granularity.
fn granularity_of(text: &str) -> anyhow::Result<Granularity> {
    [Granularity::Hourly, Granularity::Daily]
        .into_iter()
        .find(|granularity| granularity_name(*granularity) == text)
        .ok_or_else(|| {
            CorruptValue::error(
                "a run's granularity",
                format!("'{text}' is not a granularity"),
            )
        })
}

/// Reads a stored run status.
pub(super) fn status_of(text: String) -> anyhow::Result<RunStatus> {
    RunStatus::decode(&text)
}

/// Reads a row of [`RUN_DOCUMENT`]. A document published before digests
/// were kept gets the digest of its bytes.
pub(super) fn document_of(mut row: Row) -> anyhow::Result<StoredDocument> {
    let content_type = row.take(0)?;
    let bytes: Vec<u8> = row.take(1)?;
    let subscription_id = row.take(2)?;
    let sha256 = match row.take::<Option<String>>(3)? {
        Some(recorded) => recorded,
        None => sha256_hex(&bytes),
    };
    Ok(StoredDocument {
        content_type,
        bytes,
        subscription_id,
        sha256,
    })
}

/// Reads the five columns of a document's listing from column `first` on:
/// name, content type, length, subscription, sha256.
pub(super) fn document_info_of(row: &mut Row, first: usize) -> anyhow::Result<DocumentInfo> {
    Ok(DocumentInfo {
        name: row.take(first)?,
        content_type: row.take(first + 1)?,
        bytes: row.take::<i64>(first + 2)?.try_into()?,
        subscription_id: row.take(first + 3)?,
        sha256: row.take(first + 4)?,
    })
}

/// Reads the figures column.
fn decode_figures(text: &str) -> anyhow::Result<RunFiguresRecord> {
    serde_json::from_str(text).context("stored run figures")
}

/// The log column: `{"dropped": n, "lines": [[level, message], …]}`.
pub(super) fn encode_log(log: &RunLogRecord) -> anyhow::Result<String> {
    let lines: Vec<(&str, &str)> = log
        .lines
        .iter()
        .map(|line| (line.level, line.message.as_str()))
        .collect();
    Ok(serde_json::to_string(
        &serde_json::json!({ "dropped": log.dropped, "lines": lines }),
    )?)
}

/// Reads the log column.
pub(super) fn decode_log(text: &str) -> anyhow::Result<RunLogRecord> {
    #[derive(serde::Deserialize)]
    struct Column {
        dropped: u64,
        lines: Vec<(String, String)>,
    }
    let column: Column = serde_json::from_str(text).context("a stored run log")?;
    Ok(RunLogRecord {
        dropped: column.dropped,
        lines: column
            .lines
            .into_iter()
            .map(|(level, message)| LogLine {
                level: LogLine::level_named(&level),
                message,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::exports::MAX_REASON_BYTES;

    /// The longest failure reason a listing returns: one cut before it was
    /// stored, with room for its marker.
    const MAX_SERVED_REASON_BYTES: usize = MAX_REASON_BYTES + 64;

    #[test]
    fn served_reasons_are_cut_at_the_bound_the_columns_name() {
        assert!(RUN_COLUMNS.contains(&format!(
            "octet_length(reason) > {MAX_SERVED_REASON_BYTES} "
        )));
        // 1,024 characters of at most 4 bytes each, and the marker.
        assert!(RUN_COLUMNS.contains("substr(reason, 1, 1024)"));
        const { assert!(4 * 1024 + 64 <= MAX_SERVED_REASON_BYTES) };
    }

    /// The database returns no more than the bound of a long reason.
    #[test]
    fn the_database_returns_a_long_reason_cut() {
        let db = rusqlite::Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE TABLE export_runs (id, installation_id, window_start_ms, window_end_ms,
                 revision, status, attempts, reason, next_attempt_ms, created_at_ms,
                 finished_at_ms, figures, claims, world_version, component_sha256,
                 config_sha256, config_digest, granularity, usage_sha256)",
        )
        .unwrap();
        let whole = "é".repeat(1 << 20);
        for reason in ["short", whole.as_str()] {
            db.execute(
                "INSERT INTO export_runs (id, reason) VALUES (1, ?1)",
                [reason],
            )
            .unwrap();
            let served: String = db
                .query_row(
                    &format!("SELECT {RUN_COLUMNS} FROM export_runs"),
                    [],
                    |row| row.get(7),
                )
                .unwrap();
            if reason == "short" {
                assert_eq!(served, "short");
            } else {
                assert!(served.len() <= MAX_SERVED_REASON_BYTES, "{}", served.len());
                assert!(served.ends_with(&format!("… [truncated: {} bytes]", whole.len())));
            }
            db.execute("DELETE FROM export_runs", []).unwrap();
        }
    }

    #[test]
    fn leases_on_either_database_run_on_its_clock() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            for sql in [
                claim_run(dialect),
                renew_lease(dialect),
                requeue_interrupted(dialect, Interrupted::LeaseEnded),
            ] {
                assert!(sql.contains(dialect.now_ms()), "{sql}");
            }
            let all = requeue_interrupted(dialect, Interrupted::AllRunning);
            assert!(!all.contains(dialect.now_ms()), "{all}");
        }
    }
}

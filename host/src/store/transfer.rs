//! `tally migrate`: copies an embedded SQLite store into an empty PostgreSQL
//! database, keys and all, in one PostgreSQL transaction.
//!
//! Both schemas have the same tables and columns at the same version, so the
//! copy is table by table in foreign-key order (binary `COPY`), reading one
//! SQLite snapshot. Keys are kept, so paging tokens, run ids and installation
//! ids stay valid; sequences continue after them. Before committing, every
//! table's row count and every quantity total are compared with the source:
//! nothing lost, nothing counted twice. On any error nothing is committed.
//! PostgreSQL's `usage_events` also has the month it is partitioned by,
//! computed from each event's usage end as it is copied.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use futures_util::pin_mut;
use rusqlite::types::Value;
use tokio::sync::mpsc;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use super::postgres::PostgresStore;
use super::sqlite::{DATABASE_FILE, SqliteStore};

/// A column's type in PostgreSQL.
#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Text,
    Bytes,
    Bool,
}

/// Tables in foreign-key order, with their columns.
#[rustfmt::skip]
const TABLES: &[(&str, &[(&str, Kind)])] = {
    use Kind::*;
    &[
        ("meters", &[("key", Int), ("id", Text), ("name", Text), ("category", Text), ("unit", Text), ("notes", Text)]),
        ("subscriptions", &[("key", Int), ("id", Text), ("first_seen", Text)]),
        ("instances", &[("id", Int), ("subscription_key", Int), ("digest", Bytes), ("resource_uri", Text),
            ("location", Text), ("instance_data", Text), ("instance_data_json", Text)]),
        ("usage_events", &[("subscription_key", Int), ("event_id", Text), ("meter_key", Int), ("instance_id", Int),
            ("quantity", Float), ("usage_start_ms", Int), ("usage_end_ms", Int), ("reported_at_ms", Int), ("digest", Bytes)]),
        ("usage_hourly", &[("subscription_key", Int), ("usage_hour", Int), ("meter_key", Int), ("instance_id", Int),
            ("reported_hour", Int), ("quantity", Float)]),
        ("usage_daily", &[("subscription_key", Int), ("usage_day", Int), ("meter_key", Int), ("instance_id", Int),
            ("reported_day", Int), ("quantity", Float)]),
        ("reported_hours", &[("subscription_key", Int), ("reported_hour", Int), ("min_usage_hour", Int), ("max_usage_hour", Int), ("records", Int)]),
        ("api_tokens", &[("id", Int), ("digest", Bytes), ("role", Text), ("subscriptions", Text), ("description", Text),
            ("created_at", Text)]),
        ("adapter_components", &[("sha256", Text), ("wasm", Bytes), ("added_at", Text)]),
        ("adapter_installations", &[("id", Int), ("name", Text), ("uid", Text), ("manifest", Text), ("component_sha256", Text),
            ("description", Text), ("enabled", Bool), ("watermark_ms", Int), ("installed_at_ms", Int), ("updated_at_ms", Int),
            ("publish_to_tenants", Bool)]),
        ("export_configs", &[("sha256", Text), ("config", Text)]),
        ("export_runs", &[("id", Int), ("installation_id", Int), ("window_start_ms", Int), ("window_end_ms", Int),
            ("revision", Int), ("status", Text), ("attempts", Int), ("reason", Text), ("next_attempt_ms", Int),
            ("created_at_ms", Int), ("finished_at_ms", Int), ("figures", Text), ("log", Text), ("lease_until_ms", Int),
            ("lease_holder", Text), ("claims", Int), ("world_version", Text), ("component_sha256", Text),
            ("config_sha256", Text), ("config_digest", Text), ("granularity", Text), ("usage_sha256", Text)]),
        ("run_documents", &[("run_id", Int), ("name", Text), ("content_type", Text), ("bytes", Bytes),
            ("subscription_id", Text), ("sha256", Text)]),
        ("access_grants", &[("issuer", Text), ("subject", Text), ("subscription", Text), ("created_ms", Int)]),
        ("event_retention", &[("singleton", Int), ("before_ms", Int)]),
        ("event_archives", &[("seq", Int), ("file", Text), ("events", Int), ("bytes", Int), ("sha256", Text),
            ("last_usage_end_ms", Int), ("archived_ms", Int), ("last_subscription_key", Int), ("last_event_id", Text)]),
    ]
};

/// Key columns filled from sequences, which continue after the copied keys.
const SEQUENCES: &[(&str, &str)] = &[
    ("meters", "key"),
    ("subscriptions", "key"),
    ("instances", "id"),
    ("api_tokens", "id"),
    ("adapter_installations", "id"),
    ("export_runs", "id"),
];

/// Tables that must be empty in the target (meters are replaced: the target
/// holds only the documented ones its creation seeded).
const MUST_BE_EMPTY: &[&str] = &[
    "subscriptions",
    "usage_events",
    "api_tokens",
    "adapter_components",
    "adapter_installations",
    "export_configs",
    "access_grants",
    "event_retention",
    "event_archives",
];

/// Rows read per message from the SQLite thread.
const BATCH: usize = 2_000;

/// What was copied: rows per table, in copy order.
pub struct Copied {
    pub tables: Vec<(&'static str, u64)>,
}

/// Copies the SQLite store at `source` (a data directory or database file)
/// into the empty PostgreSQL database at `target`. The host using `source`
/// must be stopped.
pub async fn sqlite_to_postgres(source: &Path, target: &str) -> anyhow::Result<Copied> {
    let file = if source.is_dir() {
        source.join(DATABASE_FILE)
    } else {
        source.to_path_buf()
    };
    if !file.is_file() {
        bail!("{} does not exist: nothing to migrate", file.display());
    }
    // Opening brings an older file up to this build's schema version.
    let database = SqliteStore::open_file(&file)?.path().to_path_buf();
    drop(PostgresStore::open(target).await?); // creates and migrates the schema
    let (mut client, connection) = super::postgres::connect::Target::parse(target)?
        .connect()
        .await
        .context("connecting to the target")?;
    let tx = client.transaction().await?;
    for table in MUST_BE_EMPTY {
        let row = tx
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {table})"), &[])
            .await?;
        if row.get::<_, bool>(0) {
            bail!(
                "the target database already holds {table}; migrate into an empty database \
                 (nothing was copied)"
            );
        }
    }
    tx.execute("DELETE FROM meters", &[]).await?;
    // Every month from the oldest usage to the newest gets its partition.
    let (first, last) = usage_end_range(&database)?;
    if let (Some(first), Some(last)) = (first, last) {
        tx.execute(
            "SELECT create_usage_events_partition(month)
             FROM generate_series(usage_month($1), usage_month($2)) AS month",
            &[&first, &last],
        )
        .await
        .context("making the partitions of usage_events")?;
    }

    let (rows_tx, mut rows_rx) = mpsc::channel::<(usize, Vec<Vec<Value>>)>(8);
    let reader = tokio::task::spawn_blocking(move || read_tables(&database, rows_tx));
    let mut copied = Vec::new();
    let mut pending = rows_rx.recv().await;
    for (index, (table, columns)) in TABLES.iter().enumerate() {
        let mut names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let mut types: Vec<Type> = columns.iter().map(|(_, kind)| pg_type(*kind)).collect();
        let usage_end = (*table == "usage_events")
            .then(|| names.iter().position(|name| *name == "usage_end_ms"))
            .flatten();
        if usage_end.is_some() {
            names.push("usage_month");
            types.push(Type::INT8);
        }
        let sink = tx
            .copy_in(&format!(
                "COPY {table} ({}) FROM STDIN BINARY",
                names.join(", ")
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let mut count = 0u64;
        while let Some((of, rows)) = pending.take_if(|(of, _)| *of == index) {
            debug_assert_eq!(of, index);
            for row in rows {
                let month = match usage_end.map(|at| &row[at]) {
                    Some(Value::Integer(ms)) => Some(usage_month(*ms)?),
                    Some(other) => bail!("{table}.usage_end_ms: unexpected stored value {other:?}"),
                    None => None,
                };
                let mut cells = row
                    .into_iter()
                    .zip(columns.iter())
                    .map(|(value, (name, kind))| {
                        cell(value, *kind).with_context(|| format!("{table}.{name}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                cells.extend(month.map(|month| Box::new(month) as Cell));
                let refs: Vec<&(dyn ToSql + Sync)> = cells
                    .iter()
                    .map(|cell| cell.as_ref() as &(dyn ToSql + Sync))
                    .collect();
                writer.as_mut().write(&refs).await?;
                count += 1;
            }
            pending = rows_rx.recv().await;
        }
        writer.finish().await?;
        copied.push((*table, count));
    }
    let source = reader.await??;

    // Sequences continue after the copied keys, and after keys SQLite handed
    // out and deleted since (AUTOINCREMENT never reuses them).
    for (table, column) in SEQUENCES {
        let used = source.sequences.get(*table).copied().unwrap_or(0);
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                               greatest(coalesce(max({column}), 0), $1) + 1, false) FROM {table}"
            ),
            &[&used],
        )
        .await?;
    }
    verify(&tx, source.figures).await?;
    tx.commit().await?;
    // Fresh planner statistics, so the first queries on the copy plan well.
    client.batch_execute("ANALYZE").await?;
    drop(client);
    let _ = connection.await;
    Ok(Copied { tables: copied })
}

/// The month `usage_events` is partitioned by, of a usage end in milliseconds.
fn usage_month(ms: i64) -> anyhow::Result<i64> {
    let end = chrono::DateTime::from_timestamp_millis(ms)
        .with_context(|| format!("usage_events.usage_end_ms: {ms} is not a time"))?;
    Ok(super::postgres::usage_month(end))
}

/// The first and last usage end of the source's events (through the index
/// on `usage_end_ms`).
fn usage_end_range(database: &Path) -> anyhow::Result<(Option<i64>, Option<i64>)> {
    let conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", database.display()))?;
    Ok(conn.query_row(
        "SELECT min(usage_end_ms), max(usage_end_ms) FROM usage_events",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

/// Row counts of every table, and the quantity totals of the usage tables.
type Figures = Vec<(&'static str, u64, f64)>;

/// What the source's snapshot held besides its rows.
struct Snapshot {
    figures: Figures,
    /// SQLite's AUTOINCREMENT counters by table.
    sequences: HashMap<String, i64>,
}

const FIGURES_SQL: &str = "SELECT count(*), coalesce(sum(quantity), 0) FROM";

fn has_quantity(table: &str) -> bool {
    matches!(table, "usage_events" | "usage_hourly" | "usage_daily")
}

async fn verify(tx: &tokio_postgres::Transaction<'_>, source: Figures) -> anyhow::Result<()> {
    for (table, count, total) in source {
        let (copied, copied_total) = if has_quantity(table) {
            let row = tx.query_one(&format!("{FIGURES_SQL} {table}"), &[]).await?;
            (row.get::<_, i64>(0), row.get::<_, f64>(1))
        } else {
            let row = tx
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?;
            (row.get::<_, i64>(0), 0.0)
        };
        // Sums of the same values in another order may differ in the last bits.
        let tolerance = 1e-9 * total.abs().max(1.0);
        if copied as u64 != count || (copied_total - total).abs() > tolerance {
            bail!(
                "{table}: the source has {count} rows totalling {total}, the copy {copied} totalling {copied_total}; nothing was committed"
            );
        }
    }
    Ok(())
}

/// Reads every table in one read transaction (one snapshot), in batches;
/// then the same snapshot's figures, to check the copy against.
fn read_tables(
    database: &Path,
    rows: mpsc::Sender<(usize, Vec<Vec<Value>>)>,
) -> anyhow::Result<Snapshot> {
    let mut conn =
        rusqlite::Connection::open_with_flags(database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", database.display()))?;
    let snapshot = conn.transaction()?;
    for (index, (table, columns)) in TABLES.iter().enumerate() {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let mut select = snapshot.prepare(&format!("SELECT {} FROM {table}", names.join(", ")))?;
        let mut cursor = select.query([])?;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(row) = cursor.next()? {
            batch.push(
                (0..columns.len())
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()?,
            );
            if batch.len() == BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                rows.blocking_send((index, full))
                    .context("the copy stopped")?;
            }
        }
        if !batch.is_empty() {
            rows.blocking_send((index, batch))
                .context("the copy stopped")?;
        }
    }
    drop(rows); // the copy may finish while the figures are read
    let figures = TABLES
        .iter()
        .map(|(table, _)| {
            let (count, total) = if has_quantity(table) {
                snapshot.query_row(&format!("{FIGURES_SQL} {table}"), [], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, f64>(1)?))
                })?
            } else {
                let sql = format!("SELECT count(*) FROM {table}");
                (snapshot.query_row(&sql, [], |r| r.get::<_, i64>(0))?, 0.0)
            };
            Ok((*table, count as u64, total))
        })
        .collect::<anyhow::Result<_>>()?;
    let sequences = snapshot
        .prepare("SELECT name, seq FROM sqlite_sequence")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Snapshot { figures, sequences })
}

fn pg_type(kind: Kind) -> Type {
    match kind {
        Kind::Int => Type::INT8,
        Kind::Float => Type::FLOAT8,
        Kind::Text => Type::TEXT,
        Kind::Bytes => Type::BYTEA,
        Kind::Bool => Type::BOOL,
    }
}

type Cell = Box<dyn ToSql + Sync + Send>;

/// A SQLite value as the PostgreSQL column wants it.
fn cell(value: Value, kind: Kind) -> anyhow::Result<Cell> {
    Ok(match (kind, value) {
        (Kind::Int, Value::Null) => Box::new(None::<i64>),
        (Kind::Float, Value::Null) => Box::new(None::<f64>),
        (Kind::Text, Value::Null) => Box::new(None::<String>),
        (Kind::Bytes, Value::Null) => Box::new(None::<Vec<u8>>),
        (Kind::Bool, Value::Null) => Box::new(None::<bool>),
        (Kind::Int, Value::Integer(n)) => Box::new(n),
        (Kind::Float, Value::Real(x)) => Box::new(x),
        (Kind::Float, Value::Integer(n)) => Box::new(n as f64),
        (Kind::Text, Value::Text(text)) => Box::new(text),
        (Kind::Bytes, Value::Blob(bytes)) => Box::new(bytes),
        (Kind::Bool, Value::Integer(n)) => Box::new(n != 0),
        (_, other) => bail!("unexpected stored value {other:?}"),
    })
}

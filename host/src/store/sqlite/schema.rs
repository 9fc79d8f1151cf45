//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Append a migration to [`MIGRATIONS`]; never edit one that has shipped.

use anyhow::{Context, bail};
use rusqlite::Connection;

/// Migration `i` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: usage events, aggregates, meters, subscriptions, tokens.
    r#"
    CREATE TABLE meters (
        key      INTEGER PRIMARY KEY,
        id       TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name     TEXT NOT NULL,
        category TEXT NOT NULL,
        unit     TEXT NOT NULL,
        notes    TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE subscriptions (
        key        INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE COLLATE NOCASE,
        first_seen TEXT NOT NULL
    );
    -- One row per distinct instanceData of a subscription.
    CREATE TABLE instances (
        id               INTEGER PRIMARY KEY,
        subscription_key INTEGER NOT NULL,
        digest           BLOB NOT NULL UNIQUE,
        resource_uri     TEXT NOT NULL,
        location         TEXT NOT NULL,
        instance_data    TEXT NOT NULL,
        -- instance_data as a JSON string literal, escaped once here so that
        -- the usage API copies it instead of escaping it on every row served.
        instance_data_json TEXT NOT NULL
    );
    -- Every accepted record, as reported: the idempotency key and the audit trail.
    CREATE TABLE usage_events (
        subscription_key INTEGER NOT NULL,
        event_id         TEXT NOT NULL,
        meter_key        INTEGER NOT NULL,
        instance_id      INTEGER NOT NULL,
        quantity         REAL NOT NULL,
        usage_start_ms   INTEGER NOT NULL,
        usage_end_ms     INTEGER NOT NULL,
        reported_at_ms   INTEGER NOT NULL,
        digest           BLOB NOT NULL,
        PRIMARY KEY (subscription_key, event_id)
    ) WITHOUT ROWID;
    -- Aggregates keyed in the order the usage API pages through them.
    CREATE TABLE usage_hourly (
        subscription_key INTEGER NOT NULL,
        usage_hour       INTEGER NOT NULL,
        meter_key        INTEGER NOT NULL,
        instance_id      INTEGER NOT NULL,
        reported_hour    INTEGER NOT NULL,
        quantity         REAL NOT NULL,
        PRIMARY KEY (subscription_key, usage_hour, meter_key, instance_id, reported_hour)
    ) WITHOUT ROWID;
    CREATE TABLE usage_daily (
        subscription_key INTEGER NOT NULL,
        usage_day        INTEGER NOT NULL,
        meter_key        INTEGER NOT NULL,
        instance_id      INTEGER NOT NULL,
        reported_day     INTEGER NOT NULL,
        quantity         REAL NOT NULL,
        PRIMARY KEY (subscription_key, usage_day, meter_key, instance_id, reported_day)
    ) WITHOUT ROWID;
    -- The usage hours each reported hour touched: bounds the scan of a reported window.
    CREATE TABLE reported_hours (
        subscription_key INTEGER NOT NULL,
        reported_hour    INTEGER NOT NULL,
        min_usage_hour   INTEGER NOT NULL,
        max_usage_hour   INTEGER NOT NULL,
        PRIMARY KEY (subscription_key, reported_hour)
    ) WITHOUT ROWID;
    CREATE TABLE api_tokens (
        id            INTEGER PRIMARY KEY,
        digest        BLOB NOT NULL UNIQUE,
        role          TEXT NOT NULL,
        subscriptions TEXT NOT NULL,
        description   TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    "#,
    // 2: billing adapters: components, installations, export runs, documents.
    r#"
    -- Components by the sha256 of their bytes: installed once, shared by installations.
    CREATE TABLE adapter_components (
        sha256   TEXT PRIMARY KEY,
        wasm     BLOB NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE adapter_installations (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        name             TEXT NOT NULL UNIQUE COLLATE NOCASE,
        uid              TEXT NOT NULL,
        manifest         TEXT NOT NULL,
        component_sha256 TEXT NOT NULL REFERENCES adapter_components (sha256),
        description      TEXT NOT NULL,
        enabled          INTEGER NOT NULL,
        watermark_ms     INTEGER NOT NULL,
        installed_at_ms  INTEGER NOT NULL,
        updated_at_ms    INTEGER NOT NULL
    );
    -- One row per (installation, window, revision): revision 0 is the window's
    -- first export, which the unique key makes happen once.
    CREATE TABLE export_runs (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        installation_id   INTEGER NOT NULL REFERENCES adapter_installations (id) ON DELETE CASCADE,
        window_start_ms   INTEGER NOT NULL,
        window_end_ms     INTEGER NOT NULL,
        revision          INTEGER NOT NULL,
        status            TEXT NOT NULL
            CHECK (status IN ('pending', 'running', 'retrying', 'succeeded', 'failed')),
        attempts          INTEGER NOT NULL DEFAULT 0,
        reason            TEXT,
        next_attempt_ms   INTEGER,
        created_at_ms     INTEGER NOT NULL,
        finished_at_ms    INTEGER,
        figures           TEXT,
        log               TEXT,
        UNIQUE (installation_id, window_start_ms, revision)
    );
    CREATE INDEX export_runs_open ON export_runs (status)
        WHERE status IN ('pending', 'running', 'retrying', 'failed');
    -- Documents of succeeded runs only: written in the transaction that marks the run succeeded.
    CREATE TABLE run_documents (
        run_id       INTEGER NOT NULL REFERENCES export_runs (id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        content_type TEXT NOT NULL,
        bytes        BLOB NOT NULL,
        PRIMARY KEY (run_id, name)
    ) WITHOUT ROWID;
    "#,
    // 3: leases on running runs (a run whose host stopped is taken over), fenced by a claim count.
    r#"
    ALTER TABLE export_runs ADD COLUMN lease_until_ms INTEGER;
    ALTER TABLE export_runs ADD COLUMN lease_holder TEXT;
    ALTER TABLE export_runs ADD COLUMN claims INTEGER NOT NULL DEFAULT 0;
    "#,
    // 4: the console: records per reported hour (for the overview), sign-in
    // sessions, and the replicas seen.
    r#"
    ALTER TABLE reported_hours ADD COLUMN records INTEGER NOT NULL DEFAULT 0;
    UPDATE reported_hours SET records = (
        SELECT count(*) FROM usage_events e
        WHERE e.subscription_key = reported_hours.subscription_key
          AND e.reported_at_ms / 3600000 = reported_hours.reported_hour);
    CREATE INDEX reported_hours_by_hour ON reported_hours (reported_hour);
    CREATE TABLE console_sessions (
        digest        BLOB PRIMARY KEY,
        token_id      INTEGER REFERENCES api_tokens (id) ON DELETE CASCADE,
        subject       TEXT NOT NULL,
        issuer        TEXT,
        role          TEXT NOT NULL,
        subscriptions TEXT NOT NULL,
        csrf          TEXT NOT NULL,
        created_ms    INTEGER NOT NULL,
        expires_ms    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX console_sessions_by_token ON console_sessions (token_id);
    CREATE TABLE host_replicas (
        id         TEXT PRIMARY KEY,
        version    TEXT NOT NULL,
        started_ms INTEGER NOT NULL,
        seen_ms    INTEGER NOT NULL
    );
    "#,
    // 5: access grants: an identity provider's subject (issuer and subject,
    // compared exactly) given tally subscriptions (compared ignoring case,
    // kept as granted).
    r#"
    CREATE TABLE access_grants (
        issuer       TEXT NOT NULL,
        subject      TEXT NOT NULL,
        subscription TEXT NOT NULL COLLATE NOCASE,
        created_ms   INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject, subscription)
    ) WITHOUT ROWID;
    "#,
    // 6: provenance of succeeded runs (what re-derives their documents), the
    // configs they ran with (content-addressed, secrets included, never
    // served), documents owned by a subscription with their digests, and the
    // installations that publish those to their tenants.
    r#"
    ALTER TABLE adapter_installations ADD COLUMN publish_to_tenants INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE export_runs ADD COLUMN world_version TEXT;
    ALTER TABLE export_runs ADD COLUMN component_sha256 TEXT;
    ALTER TABLE export_runs ADD COLUMN config_sha256 TEXT;
    ALTER TABLE export_runs ADD COLUMN config_digest TEXT;
    ALTER TABLE export_runs ADD COLUMN granularity TEXT;
    ALTER TABLE export_runs ADD COLUMN usage_sha256 TEXT;
    CREATE TABLE export_configs (
        sha256 TEXT PRIMARY KEY,
        config TEXT NOT NULL
    );
    -- NULL: the operator's document; else the subscription it belongs to, as the store spells it.
    ALTER TABLE run_documents ADD COLUMN subscription_id TEXT COLLATE NOCASE;
    ALTER TABLE run_documents ADD COLUMN sha256 TEXT;
    CREATE INDEX run_documents_by_subscription ON run_documents (subscription_id, run_id)
        WHERE subscription_id IS NOT NULL;
    "#,
    // 7: retention of usage events: their usage end indexed, so that a prune's
    // batch reads only what it deletes, and the watermark of the prunes (one
    // row once anything was pruned): usage that ended before it is refused.
    r#"
    CREATE INDEX usage_events_by_usage_end ON usage_events (usage_end_ms);
    CREATE TABLE event_retention (
        singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
        before_ms INTEGER NOT NULL
    );
    "#,
    // 8: the archive files of pruned events ([retention] archive_dir), by
    // number: a prune takes the next one in the transaction that deletes
    // what the file holds.
    r#"
    CREATE TABLE event_archives (
        seq               INTEGER PRIMARY KEY,
        file              TEXT NOT NULL,
        events            INTEGER NOT NULL,
        bytes             INTEGER NOT NULL,
        sha256            TEXT NOT NULL,
        last_usage_end_ms INTEGER NOT NULL,
        archived_ms       INTEGER NOT NULL
    );
    "#,
    // 9: nothing: PostgreSQL's fill factors of its often-updated tables
    // (SQLite rewrites a row in place).
    "-- nothing to do",
    // 10: nothing: PostgreSQL partitions its usage events by month (SQLite
    // deletes a pruned month's rows).
    "-- nothing to do",
    // 11: the key of the last event of each archive file (its usage end was
    // already there), as PostgreSQL records it to resume a month's archive.
    r#"
    ALTER TABLE event_archives ADD COLUMN last_subscription_key INTEGER;
    ALTER TABLE event_archives ADD COLUMN last_event_id TEXT;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database up to [`SCHEMA_VERSION`], one transaction per migration.
pub fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let current = usize::try_from(current).context("negative schema version")?;
    if current > SCHEMA_VERSION {
        bail!(
            "the database has schema version {current}, newer than this build's {SCHEMA_VERSION}; upgrade tally"
        );
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .with_context(|| format!("migration to schema version {}", version + 1))?;
        tx.pragma_update(None, "user_version", version as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

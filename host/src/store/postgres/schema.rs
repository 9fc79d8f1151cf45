//! Versioned schema migrations, tracked in `tally_schema`.
//!
//! The same story as SQLite's ([`crate::store::sqlite`]): migration `i` brings
//! the schema from version `i` to `i + 1`, each in one transaction; append a
//! migration, never edit one that has shipped. Versions match SQLite's, so
//! `tally migrate` copies between equal versions. Replicas starting together
//! serialise on an advisory lock, so each migration runs once.

use anyhow::{Context, bail};
use tokio_postgres::Client;

use super::MIGRATION_LOCK;

const MIGRATIONS: &[&str] = &[
    // 1: usage events, aggregates, meters, subscriptions, tokens.
    r#"
    -- Case-insensitive ids and names as SQLite's NOCASE compares them: ASCII
    -- letters only, whatever the database's locale.
    CREATE FUNCTION fold(text) RETURNS text
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN lower($1 COLLATE "C");
    CREATE TABLE meters (
        key      BIGSERIAL PRIMARY KEY,
        id       TEXT NOT NULL,
        name     TEXT NOT NULL,
        category TEXT NOT NULL,
        unit     TEXT NOT NULL,
        notes    TEXT NOT NULL DEFAULT ''
    );
    CREATE UNIQUE INDEX meters_id ON meters (fold(id));
    CREATE TABLE subscriptions (
        key        BIGSERIAL PRIMARY KEY,
        id         TEXT NOT NULL,
        first_seen TEXT NOT NULL
    );
    CREATE UNIQUE INDEX subscriptions_id ON subscriptions (fold(id));
    CREATE TABLE instances (
        id                 BIGSERIAL PRIMARY KEY,
        subscription_key   BIGINT NOT NULL,
        digest             BYTEA NOT NULL UNIQUE,
        resource_uri       TEXT NOT NULL,
        location           TEXT NOT NULL,
        instance_data      TEXT NOT NULL,
        instance_data_json TEXT NOT NULL
    );
    CREATE TABLE usage_events (
        subscription_key BIGINT NOT NULL,
        event_id         TEXT NOT NULL,
        meter_key        BIGINT NOT NULL,
        instance_id      BIGINT NOT NULL,
        quantity         DOUBLE PRECISION NOT NULL,
        usage_start_ms   BIGINT NOT NULL,
        usage_end_ms     BIGINT NOT NULL,
        reported_at_ms   BIGINT NOT NULL,
        digest           BYTEA NOT NULL,
        PRIMARY KEY (subscription_key, event_id)
    );
    CREATE TABLE usage_hourly (
        subscription_key BIGINT NOT NULL,
        usage_hour       BIGINT NOT NULL,
        meter_key        BIGINT NOT NULL,
        instance_id      BIGINT NOT NULL,
        reported_hour    BIGINT NOT NULL,
        quantity         DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (subscription_key, usage_hour, meter_key, instance_id, reported_hour)
    );
    CREATE TABLE usage_daily (
        subscription_key BIGINT NOT NULL,
        usage_day        BIGINT NOT NULL,
        meter_key        BIGINT NOT NULL,
        instance_id      BIGINT NOT NULL,
        reported_day     BIGINT NOT NULL,
        quantity         DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (subscription_key, usage_day, meter_key, instance_id, reported_day)
    );
    CREATE TABLE reported_hours (
        subscription_key BIGINT NOT NULL,
        reported_hour    BIGINT NOT NULL,
        min_usage_hour   BIGINT NOT NULL,
        max_usage_hour   BIGINT NOT NULL,
        PRIMARY KEY (subscription_key, reported_hour)
    );
    CREATE TABLE api_tokens (
        id            BIGSERIAL PRIMARY KEY,
        digest        BYTEA NOT NULL UNIQUE,
        role          TEXT NOT NULL,
        subscriptions TEXT NOT NULL,
        description   TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    "#,
    // 2: billing adapters: components, installations, export runs, documents.
    r#"
    CREATE TABLE adapter_components (
        sha256   TEXT PRIMARY KEY,
        wasm     BYTEA NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE adapter_installations (
        id               BIGSERIAL PRIMARY KEY,
        name             TEXT NOT NULL,
        uid              TEXT NOT NULL,
        manifest         TEXT NOT NULL,
        component_sha256 TEXT NOT NULL REFERENCES adapter_components (sha256),
        description      TEXT NOT NULL,
        enabled          BOOLEAN NOT NULL,
        watermark_ms     BIGINT NOT NULL,
        installed_at_ms  BIGINT NOT NULL,
        updated_at_ms    BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX adapter_installations_name ON adapter_installations (fold(name));
    CREATE TABLE export_runs (
        id                BIGSERIAL PRIMARY KEY,
        installation_id   BIGINT NOT NULL REFERENCES adapter_installations (id) ON DELETE CASCADE,
        window_start_ms   BIGINT NOT NULL,
        window_end_ms     BIGINT NOT NULL,
        revision          BIGINT NOT NULL,
        status            TEXT NOT NULL
            CHECK (status IN ('pending', 'running', 'retrying', 'succeeded', 'failed')),
        attempts          BIGINT NOT NULL DEFAULT 0,
        reason            TEXT,
        next_attempt_ms   BIGINT,
        created_at_ms     BIGINT NOT NULL,
        finished_at_ms    BIGINT,
        figures           TEXT,
        log               TEXT,
        UNIQUE (installation_id, window_start_ms, revision)
    );
    CREATE INDEX export_runs_open ON export_runs (status)
        WHERE status IN ('pending', 'running', 'retrying', 'failed');
    CREATE TABLE run_documents (
        run_id       BIGINT NOT NULL REFERENCES export_runs (id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        content_type TEXT NOT NULL,
        bytes        BYTEA NOT NULL,
        PRIMARY KEY (run_id, name)
    );
    "#,
    // 3: leases on running runs (a run whose host died is taken over), fenced by a claim count.
    r#"
    ALTER TABLE export_runs ADD COLUMN lease_until_ms BIGINT;
    ALTER TABLE export_runs ADD COLUMN lease_holder TEXT;
    ALTER TABLE export_runs ADD COLUMN claims BIGINT NOT NULL DEFAULT 0;
    "#,
    // 4: the console: records per reported hour (for the overview), sign-in
    // sessions, and the replicas seen.
    r#"
    ALTER TABLE reported_hours ADD COLUMN records BIGINT NOT NULL DEFAULT 0;
    UPDATE reported_hours SET records = counted.records
    FROM (SELECT subscription_key, reported_at_ms / 3600000 AS reported_hour, count(*) AS records
          FROM usage_events GROUP BY 1, 2) counted
    WHERE counted.subscription_key = reported_hours.subscription_key
      AND counted.reported_hour = reported_hours.reported_hour;
    CREATE INDEX reported_hours_by_hour ON reported_hours (reported_hour);
    CREATE TABLE console_sessions (
        digest        BYTEA PRIMARY KEY,
        token_id      BIGINT REFERENCES api_tokens (id) ON DELETE CASCADE,
        subject       TEXT NOT NULL,
        issuer        TEXT,
        role          TEXT NOT NULL,
        subscriptions TEXT NOT NULL,
        csrf          TEXT NOT NULL,
        created_ms    BIGINT NOT NULL,
        expires_ms    BIGINT NOT NULL
    );
    CREATE INDEX console_sessions_by_token ON console_sessions (token_id);
    CREATE TABLE host_replicas (
        id         TEXT PRIMARY KEY,
        version    TEXT NOT NULL,
        started_ms BIGINT NOT NULL,
        seen_ms    BIGINT NOT NULL
    );
    "#,
    // 5: access grants: an identity provider's subject (issuer and subject,
    // compared exactly) given tally subscriptions (compared as `fold` does,
    // kept as granted).
    r#"
    CREATE TABLE access_grants (
        issuer       TEXT NOT NULL,
        subject      TEXT NOT NULL,
        subscription TEXT NOT NULL,
        created_ms   BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX access_grants_key ON access_grants (issuer, subject, fold(subscription));
    "#,
    // 6: provenance of succeeded runs (what re-derives their documents), the
    // configs they ran with (content-addressed, secrets included, never
    // served), documents owned by a subscription with their digests, and the
    // installations that publish those to their tenants.
    r#"
    ALTER TABLE adapter_installations ADD COLUMN publish_to_tenants BOOLEAN NOT NULL DEFAULT FALSE;
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
    ALTER TABLE run_documents ADD COLUMN subscription_id TEXT;
    ALTER TABLE run_documents ADD COLUMN sha256 TEXT;
    CREATE INDEX run_documents_by_subscription ON run_documents (fold(subscription_id), run_id)
        WHERE subscription_id IS NOT NULL;
    "#,
    // 7: retention of usage events: their usage end indexed, so that a prune's
    // batch reads only what it deletes, and the watermark of the prunes (one
    // row once anything was pruned): usage that ended before it is refused.
    r#"
    CREATE INDEX usage_events_by_usage_end ON usage_events (usage_end_ms);
    CREATE TABLE event_retention (
        singleton BIGINT PRIMARY KEY CHECK (singleton = 1),
        before_ms BIGINT NOT NULL
    );
    "#,
    // 8: the archive files of pruned events ([retention] archive_dir), by
    // number: a prune takes the next one in the transaction that deletes
    // what the file holds.
    r#"
    CREATE TABLE event_archives (
        seq               BIGINT PRIMARY KEY,
        file              TEXT NOT NULL,
        events            BIGINT NOT NULL,
        bytes             BIGINT NOT NULL,
        sha256            TEXT NOT NULL,
        last_usage_end_ms BIGINT NOT NULL,
        archived_ms       BIGINT NOT NULL
    );
    "#,
    // 9: room on the pages of the rows ingest updates over and over (a
    // day's row every hour, an hour's bounds every request), so that an
    // update writes its new version beside the old one without touching
    // the indexes (a HOT update) and the dead versions are pruned in place:
    // 1.10x ingest in the year bench. Pages already full keep their fill.
    r#"
    ALTER TABLE usage_daily SET (fillfactor = 50);
    ALTER TABLE reported_hours SET (fillfactor = 50);
    "#,
    // 10: usage events partitioned by the month their usage ended in
    // (`year * 12 + month - 1`, UTC), one partition a month, made as ingest
    // first meets it (`partitions.rs`): pruning a month is dropping its
    // partition. The unique key must hold the partition key, so it is
    // `(subscription, eventId, usage month)`. Existing events are copied.
    r#"
    CREATE FUNCTION usage_month(usage_end_ms BIGINT) RETURNS BIGINT
        LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
        RETURN CAST(extract(year FROM to_timestamp(usage_end_ms / 1000.0) AT TIME ZONE 'UTC') * 12
                  + extract(month FROM to_timestamp(usage_end_ms / 1000.0) AT TIME ZONE 'UTC') - 1
                    AS BIGINT);
    ALTER TABLE usage_events RENAME TO usage_events_unpartitioned;
    ALTER TABLE usage_events_unpartitioned
        RENAME CONSTRAINT usage_events_pkey TO usage_events_unpartitioned_pkey;
    ALTER INDEX usage_events_by_usage_end RENAME TO usage_events_unpartitioned_by_usage_end;
    CREATE TABLE usage_events (
        subscription_key BIGINT NOT NULL,
        event_id         TEXT NOT NULL,
        meter_key        BIGINT NOT NULL,
        instance_id      BIGINT NOT NULL,
        quantity         DOUBLE PRECISION NOT NULL,
        usage_start_ms   BIGINT NOT NULL,
        usage_end_ms     BIGINT NOT NULL,
        reported_at_ms   BIGINT NOT NULL,
        digest           BYTEA NOT NULL,
        usage_month      BIGINT NOT NULL,
        PRIMARY KEY (subscription_key, event_id, usage_month)
    ) PARTITION BY RANGE (usage_month);
    CREATE INDEX usage_events_by_usage_end ON usage_events (usage_end_ms);
    -- The partition of a month, named usage_events_YYYY_MM, unless it exists:
    -- made apart, then attached, which locks usage_events only against
    -- other changes of its schema (SHARE UPDATE EXCLUSIVE), not against
    -- the ingest and reads going on (CREATE TABLE ... PARTITION OF would
    -- take ACCESS EXCLUSIVE); the attach adds the partition's indexes.
    CREATE FUNCTION create_usage_events_partition(month BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            name TEXT := format('usage_events_%s_%s', lpad(CAST(div(month, 12) AS TEXT), 4, '0'),
                                lpad(CAST(mod(month, 12) + 1 AS TEXT), 2, '0'));
        BEGIN
            IF to_regclass(quote_ident(name)) IS NULL THEN
                EXECUTE format('CREATE TABLE %I (LIKE usage_events)', name);
                EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                               name, month, month + 1);
            END IF;
        END
        $$;
    SELECT create_usage_events_partition(month)
        FROM (SELECT DISTINCT usage_month(usage_end_ms) AS month FROM usage_events_unpartitioned) AS months;
    INSERT INTO usage_events
        SELECT subscription_key, event_id, meter_key, instance_id, quantity, usage_start_ms,
               usage_end_ms, reported_at_ms, digest, usage_month(usage_end_ms)
        FROM usage_events_unpartitioned;
    DROP TABLE usage_events_unpartitioned;
    "#,
    // 11: the key of the last event of each archive file (its usage end was
    // already there), so that a prune archiving a month without deleting
    // its rows (it drops the partition after) resumes after it.
    r#"
    ALTER TABLE event_archives ADD COLUMN last_subscription_key BIGINT;
    ALTER TABLE event_archives ADD COLUMN last_event_id TEXT;
    "#,
];

/// The schema version this build writes (equal to SQLite's).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// Brings the database up to [`SCHEMA_VERSION`].
pub async fn migrate(client: &mut Client) -> anyhow::Result<()> {
    migrate_to(client, SCHEMA_VERSION).await
}

/// Brings the database up to `target` (an older version only in tests).
async fn migrate_to(client: &mut Client, target: usize) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS tally_schema (version BIGINT NOT NULL)")
        .await?;
    let current: Option<i64> = tx
        .query_opt("SELECT version FROM tally_schema", &[])
        .await?
        .map(|row| row.get(0));
    let current = usize::try_from(current.unwrap_or(0)).context("negative schema version")?;
    if current > SCHEMA_VERSION {
        bail!(
            "the database has schema version {current}, newer than this build's {SCHEMA_VERSION}; upgrade tally"
        );
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().take(target).skip(current) {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration to schema version {}", version + 1))?;
    }
    tx.execute("DELETE FROM tally_schema", &[]).await?;
    tx.execute(
        "INSERT INTO tally_schema (version) VALUES ($1)",
        &[&(target.max(current) as i64)],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::store::postgres::partitions::usage_month;

    #[test]
    fn versions_match_sqlite() {
        assert_eq!(super::SCHEMA_VERSION, crate::store::sqlite::SCHEMA_VERSION);
    }

    /// A database at version 9 with events ending on both sides of month
    /// boundaries, brought to version 10: every event is in the partition
    /// of the month Rust's [`usage_month`] gives it (the schema's
    /// `usage_month()` agrees), with its key and content, and the unique
    /// key still makes a retry a conflict.
    #[tokio::test]
    async fn migration_10_moves_events_into_their_months_on_postgres() {
        let server = std::env::var("TALLY_TEST_POSTGRES")
            .expect("this test needs PostgreSQL: set TALLY_TEST_POSTGRES");
        let name = format!(
            "tally_unit_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let (admin, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let mut url = url::Url::parse(&server).unwrap();
        url.set_path(&name);
        let (mut client, connection) = tokio_postgres::connect(url.as_str(), tokio_postgres::NoTls)
            .await
            .unwrap();
        let connection = tokio::spawn(connection);

        migrate_to(&mut client, 9).await.unwrap();
        let ends = [
            "2026-10-31T23:00:00Z",
            "2026-11-01T00:00:00Z", // the last hour of October ends in November
            "2026-11-30T23:59:59.999Z",
            "2026-12-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
        ]
        .map(|end| end.parse::<DateTime<Utc>>().unwrap());
        for (index, end) in ends.iter().enumerate() {
            let end_ms = end.timestamp_millis();
            client
                .execute(
                    "INSERT INTO usage_events VALUES (1, $1, 1, 1, $2, $3, $4, $4, '\\x00')",
                    &[
                        &format!("event-{index}"),
                        &(index as f64),
                        &(end_ms - 3_600_000),
                        &end_ms,
                    ],
                )
                .await
                .unwrap();
        }
        migrate(&mut client).await.unwrap();

        let rows = client
            .query(
                "SELECT event_id, quantity, usage_end_ms, usage_month, usage_month(usage_end_ms),
                        CAST(CAST(tableoid AS regclass) AS TEXT)
                 FROM usage_events ORDER BY event_id",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), ends.len());
        for (index, (row, end)) in rows.iter().zip(&ends).enumerate() {
            assert_eq!(row.get::<_, String>(0), format!("event-{index}"));
            assert_eq!(row.get::<_, f64>(1), index as f64);
            assert_eq!(row.get::<_, i64>(2), end.timestamp_millis());
            assert_eq!(row.get::<_, i64>(3), usage_month(*end), "{end}");
            assert_eq!(row.get::<_, i64>(4), usage_month(*end), "{end}");
            assert_eq!(
                row.get::<_, String>(5),
                format!("usage_events_{}", end.format("%Y_%m")),
                "{end}"
            );
        }
        // The same key again in the same month is refused by the key.
        let again = client
            .execute(
                "INSERT INTO usage_events VALUES (1, 'event-0', 1, 1, 0, 0, $1, 0, '\\x00', $2)",
                &[&ends[0].timestamp_millis(), &usage_month(ends[0])],
            )
            .await
            .unwrap_err();
        assert_eq!(
            again.code(),
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
        );

        drop(client);
        let _ = connection.await;
        admin
            .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .await
            .unwrap();
    }
}

//! The operations of [`ConsoleStore`](super::ConsoleStore), once for both
//! databases, over a [`Sql`] executor. Sessions expire by the database's
//! clock, so that replicas agree on when one ends.

use anyhow::anyhow;
use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::{MAX_SESSIONS_PER_TOKEN, NewSession, Received, Replica, Session, UsageOverview};
use crate::auth::{Principal, Role};
use crate::store::CorruptValue;
use crate::store::sql::{Row, Sql};

/// A stored time (milliseconds since the epoch).
fn time_of(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| anyhow!("{ms} ms is not a time"))
}

/// Stores a session (in a write transaction).
pub(crate) async fn create_session(db: &impl Sql, session: NewSession) -> anyhow::Result<()> {
    let now = db.dialect().now_ms();
    db.execute(
        &format!("DELETE FROM console_sessions WHERE expires_ms <= {now}"),
        &[],
    )
    .await?;
    if let Some(token_id) = session.token_id {
        // Keep room for this one: end the token's oldest past the limit.
        db.execute(
            "DELETE FROM console_sessions WHERE digest IN (
                 SELECT digest FROM console_sessions WHERE token_id = $1
                 ORDER BY created_ms DESC, digest LIMIT 1000000 OFFSET $2)",
            &[token_id.into(), (MAX_SESSIONS_PER_TOKEN - 1).into()],
        )
        .await?;
    }
    db.execute(
        &format!(
            "INSERT INTO console_sessions
                 (digest, token_id, subject, issuer, role, subscriptions, csrf, created_ms, expires_ms)
             VALUES ($1, $2, $3, $8, $4, $5, $6, {now}, $7)"
        ),
        &[
            session.digest.to_vec().into(),
            session.token_id.into(),
            session.subject.into(),
            session.principal.role.as_str().into(),
            serde_json::to_string(&session.principal.subscriptions)?.into(),
            session.csrf.into(),
            session.expires_at.timestamp_millis().into(),
            session.issuer.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The live session with this digest.
pub(crate) async fn session(db: &impl Sql, digest: [u8; 32]) -> anyhow::Result<Option<Session>> {
    let now = db.dialect().now_ms();
    let row = db
        .query_opt(
            &format!(
                "SELECT subject, role, subscriptions, csrf, expires_ms, token_id, issuer FROM console_sessions
                 WHERE digest = $1 AND expires_ms > {now}"
            ),
            &[digest.to_vec().into()],
        )
        .await?;
    row.map(session_of).transpose()
}

fn session_of(mut row: Row) -> anyhow::Result<Session> {
    let subject: String = row.take(0)?;
    let role: String = row.take(1)?;
    let subscriptions: String = row.take(2)?;
    let role = Role::parse(&role).ok_or_else(|| {
        CorruptValue::error("a stored session role", format!("'{role}' is not a role"))
    })?;
    Ok(Session {
        issuer: row.take(6)?,
        subject,
        principal: Principal {
            role,
            subscriptions: serde_json::from_str(&subscriptions)
                .map_err(|e| CorruptValue::error("a stored session's subscriptions", e))?,
            token_id: row.take(5)?,
        },
        csrf: row.take(3)?,
        expires_at: time_of(row.take(4)?)?,
    })
}

/// Ends a session.
pub(crate) async fn end_session(db: &impl Sql, digest: [u8; 32]) -> anyhow::Result<bool> {
    let ended = db
        .execute(
            "DELETE FROM console_sessions WHERE digest = $1",
            &[digest.to_vec().into()],
        )
        .await?;
    Ok(ended == 1)
}

/// The usage received today, this month, this hour and the previous one. Records
/// come from the per-reported-hour counts ingest keeps; meters from the
/// daily aggregates of the reported days.
pub(crate) async fn usage_overview(
    db: &impl Sql,
    now: DateTime<Utc>,
) -> anyhow::Result<UsageOverview> {
    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;
    let today = now.timestamp_millis().div_euclid(DAY_MS);
    let first_of_month = Utc
        .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .ok_or_else(|| anyhow!("no first of the month for {now}"))?
        .timestamp_millis()
        / DAY_MS;
    let received = async |first_day: i64| -> anyhow::Result<Received> {
        let hours = db
            .query_opt(
                "SELECT CAST(coalesce(sum(records), 0) AS BIGINT), count(DISTINCT subscription_key)
                 FROM reported_hours WHERE reported_hour >= $1",
                &[(first_day * 24).into()],
            )
            .await?;
        let meters = db
            .query_opt(
                "SELECT count(DISTINCT meter_key) FROM usage_daily WHERE reported_day >= $1",
                &[first_day.into()],
            )
            .await?;
        Ok(Received {
            records: first_int(hours.clone(), 0)?,
            subscriptions: first_int(hours, 1)?,
            meters: first_int(meters, 0)?,
        })
    };
    let this_hour = now.timestamp_millis().div_euclid(HOUR_MS);
    let hour = async |hour: i64| -> anyhow::Result<i64> {
        let row = db
            .query_opt(
                "SELECT CAST(coalesce(sum(records), 0) AS BIGINT) FROM reported_hours
                 WHERE reported_hour = $1",
                &[hour.into()],
            )
            .await?;
        first_int(row, 0)
    };
    let last_reported = db
        .query_opt("SELECT max(reported_at_ms) FROM usage_events", &[])
        .await?
        .map(|mut row| row.take::<Option<i64>>(0))
        .transpose()?
        .flatten()
        .map(time_of)
        .transpose()?;
    Ok(UsageOverview {
        today: received(today).await?,
        month: received(first_of_month).await?,
        this_hour: hour(this_hour).await?,
        previous_hour: hour(this_hour - 1).await?,
        last_reported,
    })
}

/// Column `index` of an aggregate's one row (a count or a sum cast to an integer).
fn first_int(row: Option<Row>, index: usize) -> anyhow::Result<i64> {
    match row {
        Some(mut row) => row.take(index),
        None => Ok(0),
    }
}

/// Every subscription id, in id order.
pub(crate) async fn subscriptions(db: &impl Sql) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    db.for_each_row(
        &format!(
            "SELECT id FROM subscriptions ORDER BY {}",
            db.dialect().bytewise("id")
        ),
        &[],
        |row| {
            ids.push(row.take(0)?);
            Ok(())
        },
    )
    .await?;
    Ok(ids)
}

/// Records that a replica is alive, stamped by the database's clock.
pub(crate) async fn replica_alive(db: &impl Sql, replica: Replica) -> anyhow::Result<()> {
    let now = db.dialect().now_ms();
    db.execute(
        &format!(
            "INSERT INTO host_replicas (id, version, started_ms, seen_ms) VALUES ($1, $2, $3, {now})
             ON CONFLICT (id) DO UPDATE SET version = excluded.version, seen_ms = excluded.seen_ms"
        ),
        &[
            replica.id.into(),
            replica.version.into(),
            replica.started_at.timestamp_millis().into(),
        ],
    )
    .await?;
    // Replicas gone for a week are forgotten.
    db.execute(
        &format!("DELETE FROM host_replicas WHERE seen_ms < {now} - 604800000"),
        &[],
    )
    .await?;
    Ok(())
}

/// The replicas seen since `since`, latest first.
pub(crate) async fn replicas(db: &impl Sql, since: DateTime<Utc>) -> anyhow::Result<Vec<Replica>> {
    let rows = db
        .query(
            "SELECT id, version, started_ms, seen_ms FROM host_replicas
             WHERE seen_ms >= $1 ORDER BY seen_ms DESC, id LIMIT 100",
            &[since.timestamp_millis().into()],
        )
        .await?;
    rows.into_iter()
        .map(|mut row| {
            Ok(Replica {
                id: row.take(0)?,
                version: row.take(1)?,
                started_at: time_of(row.take(2)?)?,
                last_seen: time_of(row.take(3)?)?,
            })
        })
        .collect()
}

//! The operations of [`AccessStore`](super::AccessStore), once for both
//! databases, over a [`Sql`] executor. Issuer and subject compare as they
//! are (both databases compare text bytewise); a subscription as
//! [`Dialect::fold`] says, as the table's key does.

use anyhow::anyhow;
use chrono::{DateTime, TimeZone, Utc};

use super::{Grant, MAX_GRANTS_PER_SUBJECT};
use crate::store::postgres::GRANTS_LOCK;
use crate::store::sql::{Dialect, Row, Sql};

const COLUMNS: &str = "issuer, subject, subscription, created_ms";

/// A stored time (milliseconds since the epoch).
fn time_of(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .ok_or_else(|| anyhow!("{ms} ms is not a time"))
}

fn grant_of(mut row: Row) -> anyhow::Result<Grant> {
    Ok(Grant {
        issuer: row.take(0)?,
        subject: row.take(1)?,
        subscription: row.take(2)?,
        created_at: time_of(row.take(3)?)?,
    })
}

/// The grant of `subscription` to the subject, if made.
async fn find(
    db: &impl Sql,
    issuer: &str,
    subject: &str,
    subscription: &str,
) -> anyhow::Result<Option<Grant>> {
    let dialect = db.dialect();
    db.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM access_grants
             WHERE issuer = $1 AND subject = $2 AND {} = {}",
            dialect.fold("subscription"),
            dialect.fold("$3")
        ),
        &[issuer.into(), subject.into(), subscription.into()],
    )
    .await?
    .map(grant_of)
    .transpose()
}

/// Grants a subscription (in a write transaction): the grant made, or the
/// one made before; `None` when the subject holds the most it may.
pub(crate) async fn grant(
    db: &impl Sql,
    issuer: &str,
    subject: &str,
    subscription: &str,
) -> anyhow::Result<Option<Grant>> {
    if db.dialect() == Dialect::Postgres {
        // Counting and adding must not interleave with another replica's:
        // grants are rare, so one lock for all of them. (A SQLite write
        // transaction holds the whole database already.)
        db.execute(&format!("SELECT pg_advisory_xact_lock({GRANTS_LOCK})"), &[])
            .await?;
    }
    if let Some(made) = find(db, issuer, subject, subscription).await? {
        return Ok(Some(made));
    }
    let held: i64 = db
        .query_opt(
            "SELECT count(*) FROM access_grants WHERE issuer = $1 AND subject = $2",
            &[issuer.into(), subject.into()],
        )
        .await?
        .map(|mut row| row.take(0))
        .transpose()?
        .unwrap_or(0);
    if held >= MAX_GRANTS_PER_SUBJECT as i64 {
        return Ok(None);
    }
    db.execute(
        &format!(
            "INSERT INTO access_grants ({COLUMNS}) VALUES ($1, $2, $3, {})",
            db.dialect().now_ms()
        ),
        &[issuer.into(), subject.into(), subscription.into()],
    )
    .await?;
    find(db, issuer, subject, subscription)
        .await?
        .map(Some)
        .ok_or_else(|| anyhow!("the grant just made does not read back"))
}

/// Revokes a grant.
pub(crate) async fn revoke(
    db: &impl Sql,
    issuer: &str,
    subject: &str,
    subscription: &str,
) -> anyhow::Result<bool> {
    let dialect = db.dialect();
    let revoked = db
        .execute(
            &format!(
                "DELETE FROM access_grants WHERE issuer = $1 AND subject = $2 AND {} = {}",
                dialect.fold("subscription"),
                dialect.fold("$3")
            ),
            &[issuer.into(), subject.into(), subscription.into()],
        )
        .await?;
    Ok(revoked > 0)
}

/// Subscriptions in the order of their key, the same on both databases:
/// ignoring ASCII case, else bytewise (SQLite's column is `NOCASE`).
fn by_subscription(dialect: Dialect) -> String {
    dialect.bytewise(&dialect.fold("subscription"))
}

/// Every grant, by issuer, subject and subscription.
pub(crate) async fn grants(db: &impl Sql) -> anyhow::Result<Vec<Grant>> {
    let dialect = db.dialect();
    let rows = db
        .query(
            &format!(
                "SELECT {COLUMNS} FROM access_grants ORDER BY {}, {}, {}",
                dialect.bytewise("issuer"),
                dialect.bytewise("subject"),
                by_subscription(dialect)
            ),
            &[],
        )
        .await?;
    rows.into_iter().map(grant_of).collect()
}

/// The subscriptions granted to a subject, by id.
pub(crate) async fn subscriptions_granted(
    db: &impl Sql,
    issuer: &str,
    subject: &str,
) -> anyhow::Result<Vec<String>> {
    let mut subscriptions = Vec::new();
    db.for_each_row(
        &format!(
            "SELECT subscription FROM access_grants WHERE issuer = $1 AND subject = $2 ORDER BY {}",
            by_subscription(db.dialect())
        ),
        &[issuer.into(), subject.into()],
        |row| {
            subscriptions.push(row.take(0)?);
            Ok(())
        },
    )
    .await?;
    Ok(subscriptions)
}

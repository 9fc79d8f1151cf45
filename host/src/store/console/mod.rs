//! What the console and sign-in keep: sessions, the figures of the
//! operator's overview, the subscriptions seen, and the replicas seen.
//!
//! The operations are written once in `ops` over the store's `Sql` executor;
//! each backend implements [`ConsoleStore`] by running them.

pub(crate) mod ops;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::auth::Principal;

/// Most live sessions one token may hold: signing in again past it ends the
/// oldest, so that a script signing in in a loop cannot grow the table.
pub const MAX_SESSIONS_PER_TOKEN: i64 = 16;

/// A session to store: only the digest of its secret is kept.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the cookie's secret.
    pub digest: [u8; 32],
    /// The token signed in with (its revocation ends the session); `None`
    /// for a session made from an identity provider's claims.
    pub token_id: Option<i64>,
    /// Who signed in, as shown and logged (e.g. `token 3`).
    pub subject: String,
    /// The identity provider that signed the person in (single sign-on).
    pub issuer: Option<String>,
    pub principal: Principal,
    /// The value state-changing requests must echo in `X-CSRF-Token`.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// A live session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub subject: String,
    /// The identity provider that signed the person in (single sign-on).
    pub issuer: Option<String>,
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Usage received over a span of reported time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Received {
    /// Records accepted.
    pub records: i64,
    /// Subscriptions that reported.
    pub subscriptions: i64,
    /// Meters reported.
    pub meters: i64,
}

/// What the operator's overview shows of the usage received.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageOverview {
    /// Since midnight UTC.
    pub today: Received,
    /// Since the first of the month, UTC.
    pub month: Received,
    /// Records reported in the current hour, so far.
    pub this_hour: i64,
    /// Records reported in the previous hour: the ingest rate per hour.
    pub previous_hour: i64,
    /// The latest reported time of any record.
    pub last_reported: Option<DateTime<Utc>>,
}

/// A replica of the host, as it last said it was alive.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    /// `hostname:pid`.
    pub id: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// Sessions, the overview's figures and the replicas seen.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Stores a session, ending expired ones and, past
    /// [`MAX_SESSIONS_PER_TOKEN`], the token's oldest.
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// The live (unexpired, by the store's clock) session with this digest.
    async fn session(&self, digest: [u8; 32]) -> Result<Option<Session>, StoreError>;

    /// Ends a session; `false` if there was none.
    async fn end_session(&self, digest: [u8; 32]) -> Result<bool, StoreError>;

    /// The usage received today, this month and lately, as of `now`.
    async fn usage_overview(&self, now: DateTime<Utc>) -> Result<UsageOverview, StoreError>;

    /// Every subscription seen (reported usage or named by a token), by id.
    async fn subscriptions(&self) -> Result<Vec<String>, StoreError>;

    /// Records that this replica is alive (`replica.last_seen` is ignored:
    /// the store's clock stamps it).
    async fn replica_alive(&self, replica: Replica) -> Result<(), StoreError>;

    /// The replicas seen alive since `since`, latest first.
    async fn replicas(&self, since: DateTime<Utc>) -> Result<Vec<Replica>, StoreError>;
}

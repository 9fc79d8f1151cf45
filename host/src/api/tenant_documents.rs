//! The documents adapters publish to tenants: what the runs of installations
//! with `publish_to_tenants` wrote for a subscription, for the tenants of
//! that subscription (their tokens and console sessions) and for operators.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/subscriptions/{sub}/documents?from=&to=` | the documents published to `sub`, newest window first |
//! | `GET /v1/subscriptions/{sub}/adapters/{name}/runs/{id}/documents/{document}` | one of them |
//! | `GET /v1/subscriptions/{sub}/adapters/{name}/documents/{document}?from=&to=` | one over many windows |
//!
//! A subscription the caller may not read is `403 AuthorizationFailed`;
//! anything not published to the subscription is `404 DocumentNotFound`,
//! worded from the request alone: no answer names another subscription or
//! its documents.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use super::runs::{ProvenanceView, WindowView, document_response, time_or_date};
use crate::exports::documents::JoinedDocument;
use crate::exports::tenants::path_segment;
use crate::store::exports::{TenantDocument, TenantDocumentsAfter};

/// Most documents in one answer of the listing; more come through `nextLink`.
pub const MAX_TENANT_DOCUMENTS: usize = 1_000;
/// Longest range of windows one listing covers, in days (and its default,
/// up to now).
pub const MAX_TENANT_RANGE_DAYS: i64 = 366;

/// `?from=&to=&continuationToken=` of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Windows starting at or after it: ISO-8601 time or date (default:
    /// 366 days before `to`).
    pub from: Option<String>,
    /// Windows starting before it: ISO-8601 time or date (default: now, or
    /// 366 days after `from` when only `from` is given). At most 366 days
    /// after `from`.
    pub to: Option<String>,
    /// From the previous answer's `nextLink`.
    pub continuation_token: Option<String>,
}

/// `?from=&to=` of a joined document.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JoinParams {
    /// Windows starting at or after it: ISO-8601 time or date (default: all).
    pub from: Option<String>,
    /// Windows starting before it: ISO-8601 time or date (default: all).
    pub to: Option<String>,
}

/// The documents published to a subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantDocumentList {
    pub value: Vec<TenantDocumentView>,
    /// The next page's URL (relative to the host), when there is more.
    #[serde(rename = "nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// A document published to a subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantDocumentView {
    /// The installed adapter that wrote it.
    pub adapter: String,
    /// The run that wrote it.
    pub run_id: i64,
    /// The reported-time window of the run.
    pub window: WindowView,
    /// 0 for the window's first export; n for its n-th correction (the
    /// latest succeeded revision of each window is listed).
    pub revision: u32,
    pub finished_at: Option<DateTime<Utc>>,
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    /// The sha256 of its bytes, recorded when it was published.
    pub sha256: Option<String>,
    /// How it was made; `null` if the run kept none.
    pub provenance: Option<ProvenanceView>,
    pub links: DocumentLinks,
}

/// Where a published document is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentLinks {
    /// Its bytes (relative to the host).
    pub download: String,
}

/// Refuses (403) a caller that may not read `subscription_id`.
fn require_reader(caller: &Caller, subscription_id: &str) -> Result<(), ApiError> {
    if caller.0.may_read(subscription_id) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "The client does not have authorization to read the documents of subscription \
             '{subscription_id}'."
        )))
    }
}

/// The documents adapters published to a subscription: of the adapters that
/// publish to tenants, those written for this subscription by the latest
/// succeeded revision of each window starting in `[from, to)`. Newest window
/// first, then by adapter and name; at most 1,000 per answer, the rest
/// through `nextLink`. A range is at most 366 days.
#[utoipa::path(get, path = "/v1/subscriptions/{subscriptionId}/documents", tag = "documents",
    params(("subscriptionId" = String, Path), ListParams),
    responses((status = 200, body = TenantDocumentList),
              (status = 400, description = "InvalidProperty: a malformed time, a range longer than 366 days or ending before it starts, a malformed continuationToken", body = ErrorResponse),
              (status = 403, description = "AuthorizationFailed: the caller may not read this subscription", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(subscription_id): Path<String>,
    Query(params): Query<ListParams>,
) -> Result<Json<TenantDocumentList>, ApiError> {
    require_reader(&caller, &subscription_id)?;
    let exports = state.exports()?;
    let (from, to) = listing_range(&params, crate::clock::now())?;
    let after = params
        .continuation_token
        .as_deref()
        .map(decode_continuation)
        .transpose()?;
    let mut documents = exports
        .tenant_documents(&subscription_id, from, to, after, MAX_TENANT_DOCUMENTS + 1)
        .await?;
    let more = documents.len() > MAX_TENANT_DOCUMENTS;
    documents.truncate(MAX_TENANT_DOCUMENTS);
    let next_link = documents.last().filter(|_| more).map(|last| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("from", &from.to_rfc3339())
            .append_pair("to", &to.to_rfc3339())
            .append_pair("continuationToken", &encode_continuation(last))
            .finish();
        format!(
            "/v1/subscriptions/{}/documents?{query}",
            path_segment(&subscription_id)
        )
    });
    let value = documents
        .into_iter()
        .map(|document| document_view(&subscription_id, document))
        .collect();
    Ok(Json(TenantDocumentList { value, next_link }))
}

/// A document an adapter's run published to a subscription, as it was
/// written.
#[utoipa::path(get, path = "/v1/subscriptions/{subscriptionId}/adapters/{name}/runs/{id}/documents/{document}",
    tag = "documents",
    params(("subscriptionId" = String, Path), ("name" = String, Path), ("id" = i64, Path),
           ("document" = String, Path)),
    responses((status = 200, description = "the document, served as an operator's run document is: its content type, inline when text/csv, text/plain, JSON or NDJSON, else an attachment; always `Content-Security-Policy: sandbox` and `nosniff`", content_type = "*/*"),
              (status = 403, description = "AuthorizationFailed: the caller may not read this subscription", body = ErrorResponse),
              (status = 404, description = "DocumentNotFound: no such document is published to this subscription", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn run_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((subscription_id, name, id, document)): Path<(String, String, i64, String)>,
) -> Result<Response, ApiError> {
    require_reader(&caller, &subscription_id)?;
    let exports = state.exports()?;
    let stored = exports
        .tenant_run_document(&subscription_id, &name, id, &document)
        .await?;
    Ok(document_response(
        &stored.content_type,
        &document,
        Body::from(stored.bytes),
    ))
}

/// One document an adapter published to a subscription, over the windows
/// starting in `[from, to)` (default: all) whose latest succeeded revision
/// published it to the subscription, in window order; CSV with one header.
/// A stable URL for a tenant's tools to refresh from.
#[utoipa::path(get, path = "/v1/subscriptions/{subscriptionId}/adapters/{name}/documents/{document}",
    tag = "documents",
    params(("subscriptionId" = String, Path), ("name" = String, Path), ("document" = String, Path),
           JoinParams),
    responses((status = 200, description = "the joined document, served as a run's document is", content_type = "*/*"),
              (status = 400, description = "InvalidProperty: a malformed time", body = ErrorResponse),
              (status = 403, description = "AuthorizationFailed: the caller may not read this subscription", body = ErrorResponse),
              (status = 404, description = "DocumentNotFound: no such document was ever published to this subscription", body = ErrorResponse),
              (status = 409, description = "NotJoinable: the document's content type does not join across runs", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn joined_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((subscription_id, name, document)): Path<(String, String, String)>,
    Query(range): Query<JoinParams>,
) -> Result<Response, ApiError> {
    require_reader(&caller, &subscription_id)?;
    let exports = state.exports()?;
    let from = match &range.from {
        Some(text) => time_or_date("from", text)?,
        None => DateTime::<Utc>::MIN_UTC,
    };
    let to = match &range.to {
        Some(text) => time_or_date("to", text)?,
        None => DateTime::<Utc>::MAX_UTC,
    };
    let JoinedDocument { content_type, body } = exports
        .tenant_joined_document(&subscription_id, &name, &document, from, to)
        .await?;
    Ok(document_response(
        &content_type,
        &document,
        Body::from_stream(body),
    ))
}

/// The range of windows a listing covers: as given, else up to `now` and
/// 366 days back (or 366 days from a `from` given alone). Refused when it
/// ends before it starts or is longer than 366 days.
fn listing_range(
    params: &ListParams,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let longest = Duration::days(MAX_TENANT_RANGE_DAYS);
    let from = params
        .from
        .as_deref()
        .map(|text| time_or_date("from", text))
        .transpose()?;
    let to = params
        .to
        .as_deref()
        .map(|text| time_or_date("to", text))
        .transpose()?;
    let (from, to) = match (from, to) {
        (Some(from), Some(to)) => (from, to),
        (Some(from), None) => (from, from.checked_add_signed(longest).unwrap_or(from)),
        (None, Some(to)) => (to.checked_sub_signed(longest).unwrap_or(to), to),
        (None, None) => (now - longest, now),
    };
    if from >= to {
        return Err(ApiError::invalid_property("to", "it must be after 'from'"));
    }
    if to - from > longest {
        return Err(ApiError::invalid_property(
            "to",
            format!(
                "the range covers {} days; a listing covers at most {MAX_TENANT_RANGE_DAYS}",
                (to - from).num_days()
            ),
        ));
    }
    Ok((from, to))
}

/// A document as the listing shows it to `subscription_id`'s readers.
fn document_view(subscription_id: &str, listed: TenantDocument) -> TenantDocumentView {
    let TenantDocument {
        adapter,
        run,
        document,
    } = listed;
    let download = format!(
        "/v1/subscriptions/{}/adapters/{adapter}/runs/{}/documents/{}",
        path_segment(subscription_id),
        run.id,
        path_segment(&document.name)
    );
    TenantDocumentView {
        run_id: run.id,
        window: WindowView::of(&run),
        revision: run.revision,
        finished_at: run.finished_at,
        provenance: ProvenanceView::of(&run),
        name: document.name,
        content_type: document.content_type,
        bytes: document.bytes,
        sha256: document.sha256,
        links: DocumentLinks { download },
        adapter,
    }
}

/// Where the next page starts: after `last` (its window in ms, its
/// installation, its name in base64url).
fn encode_continuation(last: &TenantDocument) -> String {
    format!(
        "{}.{}.{}",
        last.run.window_start.timestamp_millis(),
        last.run.installation_id,
        URL_SAFE_NO_PAD.encode(&last.document.name)
    )
}

/// Reads a continuation token; a malformed one is a 400.
fn decode_continuation(token: &str) -> Result<TenantDocumentsAfter, ApiError> {
    let malformed = || {
        ApiError::invalid_property(
            "continuationToken",
            "it is not one this host gave; follow the nextLink as given",
        )
    };
    let mut parts = token.splitn(3, '.');
    let (Some(window), Some(installation), Some(name)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let window_start = window
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(malformed)?;
    let installation_id = installation.parse().map_err(|_| malformed())?;
    let name = URL_SAFE_NO_PAD
        .decode(name)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(malformed)?;
    Ok(TenantDocumentsAfter {
        window_start,
        installation_id,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: Option<&str>, to: Option<&str>) -> ListParams {
        ListParams {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            continuation_token: None,
        }
    }

    #[test]
    fn a_listing_covers_the_last_366_days_by_default_and_never_more() {
        let now = "2026-03-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let day = |text: &str| {
            format!("{text}T00:00:00Z")
                .parse::<DateTime<Utc>>()
                .unwrap()
        };
        let range = |from, to| listing_range(&params(from, to), now);
        assert_eq!(range(None, None).unwrap(), (now - Duration::days(366), now));
        assert_eq!(
            range(Some("2025-01-01"), None).unwrap(),
            (day("2025-01-01"), day("2026-01-02"))
        );
        assert_eq!(
            range(None, Some("2025-01-01")).unwrap(),
            (day("2024-01-01"), day("2025-01-01")),
            "2024 has 366 days"
        );
        assert!(range(Some("2024-01-01"), Some("2025-01-01")).is_ok());
        let long = range(Some("2024-01-01"), Some("2025-01-02")).unwrap_err();
        assert!(long.message.contains("at most 366"), "{}", long.message);
        let backwards = range(Some("2025-01-02"), Some("2025-01-01")).unwrap_err();
        assert!(backwards.message.contains("'to'"), "{}", backwards.message);
        assert!(range(Some("yesterday"), None).is_err());
    }

    #[test]
    fn a_continuation_token_reads_back_and_a_forged_one_is_refused() {
        let after = TenantDocumentsAfter {
            window_start: "2026-02-01T00:00:00Z".parse().unwrap(),
            installation_id: 7,
            name: "statement.sub-a.html".into(),
        };
        let token = format!(
            "{}.{}.{}",
            after.window_start.timestamp_millis(),
            after.installation_id,
            URL_SAFE_NO_PAD.encode(&after.name)
        );
        assert_eq!(decode_continuation(&token).unwrap(), after);
        for forged in [
            "",
            "1.2",
            "x.2.YQ",
            "1.x.YQ",
            "1.2.!!",
            "99999999999999999999.2.YQ",
        ] {
            assert!(decode_continuation(forged).is_err(), "{forged}");
        }
    }
}

//! `GET /v1/usage/summary`: the console's usage explorer, aggregated on the
//! server. The same rows as the usage API over the same reported-time range,
//! folded into a chart series per meter and a table grouped by
//! subscription, meter, location or a tag's value; `format=csv` answers the
//! table as CSV.
//!
//! Bounded: at most [`MAX_HOURLY_DAYS`] days of hours or [`MAX_DAILY_DAYS`]
//! of days, and [`fold::MAX_TABLE_ROWS`] table rows.

mod csv;
mod fold;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use crate::auth::Role;
use crate::store::{AggregateQuery, SubscriptionScope};
use crate::usage::Granularity;
use crate::usage::record::{MAX_ID_LEN, check_id, quote};
use crate::usage::time::{YEAR_RANGE, parse_time_or_date};
pub use fold::{GroupBy, MAX_TABLE_ROWS};

/// Longest hourly range, in days.
pub const MAX_HOURLY_DAYS: i64 = 31;
/// Longest daily range, in days.
pub const MAX_DAILY_DAYS: i64 = 366;
/// Rows read from the store per query.
const ROWS_PER_READ: usize = 5_000;

/// The explorer's parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// Reported time, inclusive: ISO-8601 UTC or a date, on a bucket boundary.
    pub from: String,
    /// Reported time, exclusive: ISO-8601 UTC or a date, on a bucket boundary.
    pub to: String,
    /// `Daily` (default) or `Hourly`.
    pub granularity: Option<String>,
    /// `subscription`, `meter` (default), `location` or `tag:KEY`.
    pub group_by: Option<String>,
    /// Only this subscription.
    pub subscription: Option<String>,
    /// `json` (default) or `csv` (the table only).
    pub format: Option<String>,
}

/// The explorer's data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSummary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: String,
    pub group_by: String,
    /// Usage-time bucket starts, ascending: the chart's x axis.
    pub buckets: Vec<DateTime<Utc>>,
    /// Per meter, by name: its total and its quantity per bucket.
    pub meters: Vec<MeterSeries>,
    /// The table: per group and meter, by group then meter name.
    pub rows: Vec<SummaryRow>,
    /// Aggregate rows read on the server.
    pub aggregate_rows: u64,
}

/// One meter's total and series. Totals are per meter: meters have different units.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeterSeries {
    pub meter_id: String,
    pub name: String,
    pub unit: String,
    pub total: f64,
    /// Quantity per bucket, in the order of `buckets`.
    pub series: Vec<f64>,
}

/// One row of the table.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SummaryRow {
    /// The subscription, meter id, location or tag value ("" where an
    /// instance has no such tag).
    pub group: String,
    pub meter_id: String,
    pub meter_name: String,
    pub unit: String,
    pub quantity: f64,
}

/// Usage over a reported-time range, folded for the console's explorer.
#[utoipa::path(get, path = "/v1/usage/summary", tag = "usage", params(SummaryParams),
    responses(
        (status = 200, description = "JSON; with `format=csv`, the rows as `text/csv`",
         content((UsageSummary = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorResponse),
        (status = 403, body = ErrorResponse, description = "Not a subscription the token may read")),
    security(("bearer" = [])))]
pub async fn usage_summary(
    State(state): State<AppState>,
    caller: Caller,
    params: Result<Query<SummaryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Operator, Role::Tenant])?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("InvalidProperty", e.body_text()))?;
    let csv = match params.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::invalid_property(
                "format",
                format!("{} is not json or csv", quote(other)),
            ));
        }
    };
    let range = Range::of(&params)?;
    let group_by = match params.group_by.as_deref() {
        None => GroupBy::Meter,
        Some(text) => GroupBy::parse(text).ok_or_else(|| {
            ApiError::invalid_property(
                "groupBy",
                format!(
                    "{} is not subscription, meter, location or tag:KEY",
                    quote(text)
                ),
            )
        })?,
    };
    let scopes = scopes(&caller, params.subscription.as_deref())?;
    let mut fold = fold::Fold::new(group_by.clone());
    for scope in scopes {
        let query = AggregateQuery {
            scope,
            reported_start: range.from,
            reported_end: range.to,
            granularity: range.granularity,
            show_details: group_by.needs_instances(),
            page_size: ROWS_PER_READ,
        };
        let mut after = None;
        loop {
            let page = state.store.aggregates(&query, after).await?;
            fold.add(&page.rows).map_err(|_| {
                ApiError::bad_request(
                    "TooManyGroups",
                    format!(
                        "The table would have more than {MAX_TABLE_ROWS} rows; choose a shorter \
                         range, another grouping or one subscription."
                    ),
                )
            })?;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    let folded = fold.finish();
    let summary = UsageSummary {
        from: range.from,
        to: range.to,
        granularity: range.granularity.name().to_owned(),
        group_by: group_by.name(),
        buckets: folded
            .buckets
            .iter()
            .map(|&start| DateTime::from_timestamp(start, 0).unwrap_or_default())
            .collect(),
        meters: folded
            .meters
            .into_iter()
            .map(|(meter, total, series)| MeterSeries {
                meter_id: meter.id.clone(),
                name: meter.name.clone(),
                unit: meter.unit.clone(),
                total,
                series,
            })
            .collect(),
        rows: folded
            .rows
            .into_iter()
            .map(|(group, meter, quantity)| SummaryRow {
                group,
                meter_id: meter.id.clone(),
                meter_name: meter.name.clone(),
                unit: meter.unit.clone(),
                quantity,
            })
            .collect(),
        aggregate_rows: folded.rows_read,
    };
    if csv {
        let name = format!(
            "attachment; filename=\"usage-{}-{}.csv\"",
            range.from.format("%Y%m%dT%H"),
            range.to.format("%Y%m%dT%H")
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, name),
            ],
            csv::table(&summary.rows),
        )
            .into_response());
    }
    Ok(Json(summary).into_response())
}

/// A checked reported-time range.
struct Range {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
}

impl Range {
    fn of(params: &SummaryParams) -> Result<Self, ApiError> {
        let granularity = match params.granularity.as_deref() {
            None => Granularity::Daily,
            Some(text) => Granularity::parse(text).ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidAggregationGranularity",
                    format!(
                        "The granularity {} is not valid; use 'Daily' or 'Hourly'.",
                        quote(text)
                    ),
                )
            })?,
        };
        let time = |name: &str, value: &str| -> Result<DateTime<Utc>, ApiError> {
            let time = parse_time_or_date(value).ok_or_else(|| {
                ApiError::invalid_property(
                    name,
                    format!(
                        "{} is not an ISO-8601 time or date {YEAR_RANGE}",
                        quote(value)
                    ),
                )
            })?;
            if !granularity.is_boundary(time) {
                return Err(ApiError::invalid_property(
                    name,
                    format!(
                        "{} is not on a {} boundary",
                        quote(value),
                        granularity.name()
                    ),
                ));
            }
            Ok(time)
        };
        let from = time("from", &params.from)?;
        let to = time("to", &params.to)?;
        if to <= from {
            return Err(ApiError::invalid_property("to", "it must be after from"));
        }
        let longest = match granularity {
            Granularity::Hourly => MAX_HOURLY_DAYS,
            Granularity::Daily => MAX_DAILY_DAYS,
        };
        if to - from > Duration::days(longest) {
            return Err(ApiError::invalid_property(
                "to",
                format!(
                    "a {} range spans at most {longest} days",
                    granularity.name()
                ),
            ));
        }
        Ok(Range {
            from,
            to,
            granularity,
        })
    }
}

/// The subscriptions a summary reads: an operator's filter or all; a
/// tenant's filter (one of theirs) or each of theirs.
fn scopes(caller: &Caller, filter: Option<&str>) -> Result<Vec<SubscriptionScope>, ApiError> {
    let filter = filter.filter(|s| !s.is_empty());
    if let Some(subscription) = filter {
        check_id(subscription, MAX_ID_LEN).map_err(|problem| {
            ApiError::invalid_property("subscription", format!("it {problem}"))
        })?;
        if !caller.0.may_read(subscription) {
            return Err(ApiError::forbidden(format!(
                "The client does not have authorization to read the usage of subscription '{subscription}'."
            )));
        }
        return Ok(vec![SubscriptionScope::One(subscription.to_owned())]);
    }
    Ok(match caller.0.role {
        Role::Operator => vec![SubscriptionScope::All],
        _ => caller
            .0
            .subscriptions
            .iter()
            .map(|s| SubscriptionScope::One(s.clone()))
            .collect(),
    })
}

//! The Azure-compatible usage API: tenant and provider (operator) usage aggregates.
//!
//! Paths, parameters, errors and the response shape follow the Azure Stack
//! usage API (`api-version=2015-06-01-preview`), so existing Azure clients
//! work unchanged. Resource-provider path segments match case-insensitively,
//! as on ARM.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;
use url::Url;

use super::auth::Caller;
use super::error::ApiError;
use super::paging;
use super::usage_json::{self, RowNames};
use super::{AppState, Settings};
use crate::auth::Role;
use crate::store::{AggregateQuery, AggregateRow, SubscriptionScope};
use crate::usage::Granularity;
use crate::usage::record::{MAX_ID_LEN, check_id, quote};
use crate::usage::time::{YEAR_RANGE, parse_time};

/// The one api-version this API speaks.
pub const API_VERSION: &str = "2015-06-01-preview";

/// A page of usage aggregates: the response's shape, as the OpenAPI
/// document describes it. Pages are written by [`usage_json`], byte for
/// byte as `serde_json` writes this.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageAggregationListResult<'a> {
    pub value: Vec<UsageAggregation<'a>>,
    /// Absolute URL of the next page; absent on the last page.
    #[serde(rename = "nextLink", skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// One aggregated row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageAggregation<'a> {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub properties: UsageSample<'a>,
}

/// The usage of one meter (and instance, with `showDetails`) in one usage bucket.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageSample<'a> {
    pub subscription_id: &'a str,
    pub meter_id: &'a str,
    /// ISO-8601 with an explicit offset.
    pub usage_start_time: &'a str,
    pub usage_end_time: &'a str,
    pub quantity: f64,
    pub unit: &'a str,
    pub meter_name: &'a str,
    pub meter_category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meter_region: Option<&'a str>,
    /// JSON inside a string: `{"Microsoft.Resources":{"resourceUri":…,"location":…,"tags":…,"additionalInfo":…}}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub instance_data: Option<&'a RawValue>,
}

/// Which of the two APIs a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UsageApi {
    Tenant,
    Provider,
}

impl UsageApi {
    fn namespace(self) -> &'static str {
        match self {
            UsageApi::Tenant => "Microsoft.Commerce",
            UsageApi::Provider => "Microsoft.Commerce.Admin",
        }
    }

    fn row_type(self) -> &'static str {
        match self {
            UsageApi::Tenant => "Microsoft.Commerce/UsageAggregate",
            UsageApi::Provider => "Microsoft.Commerce.Admin/UsageAggregate",
        }
    }
}

/// Usage of one subscription (tenant API).
///
/// Rows aggregate usage by usage time (hour or UTC day) over the records
/// *reported* in `[reportedStartTime, reportedEndTime)`, at most 1,000 a page.
#[utoipa::path(
    get, path = "/subscriptions/{subscriptionId}/providers/Microsoft.Commerce/UsageAggregates", tag = "usage",
    params(
        ("subscriptionId" = String, Path),
        ("reportedStartTime" = String, Query, description = "ISO-8601 UTC, inclusive, on an hour (Daily: midnight)"),
        ("reportedEndTime" = String, Query, description = "ISO-8601 UTC, exclusive, on an hour (Daily: midnight), not in the future"),
        ("aggregationGranularity" = Option<String>, Query, description = "Daily (default) or Hourly, case-insensitive"),
        ("showDetails" = Option<bool>, Query, description = "Per instance (default true)"),
        ("api-version" = String, Query, description = "2015-06-01-preview"),
        ("continuationToken" = Option<String>, Query, description = "From the previous page's nextLink"),
    ),
    responses(
        (status = 200, body = UsageAggregationListResult),
        (status = 400, description = "NoApiVersion, InvalidProperty, RequestEndTimeIsInFuture, InvalidAggregationGranularity, SubscriptionIdMissingInRequest, InvalidHost (an answer of more than one page to a request whose Host is not one of the host's names)", body = super::error::ErrorResponse),
        (status = 401, body = super::error::ErrorResponse),
        (status = 403, description = "The token may not read this subscription", body = super::error::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn tenant_usage(
    state: &AppState,
    caller: &Caller,
    subscription_id: &str,
    request: &UsageRequest,
) -> Result<Listing, ApiError> {
    if !caller.0.may_read(subscription_id) {
        return Err(ApiError::forbidden(format!(
            "The client does not have authorization to read the usage of subscription '{subscription_id}'."
        )));
    }
    list(
        state,
        UsageApi::Tenant,
        SubscriptionScope::One(subscription_id.into()),
        request,
    )
    .await
}

/// Usage of all subscriptions, or of one with `subscriberId` (provider API, operators only).
#[utoipa::path(
    get, path = "/subscriptions/{providerSubscriptionId}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates",
    tag = "usage",
    params(
        ("providerSubscriptionId" = String, Path),
        ("reportedStartTime" = String, Query),
        ("reportedEndTime" = String, Query),
        ("aggregationGranularity" = Option<String>, Query),
        ("subscriberId" = Option<String>, Query, description = "One tenant subscription; all when absent"),
        ("api-version" = String, Query),
        ("continuationToken" = Option<String>, Query),
    ),
    responses(
        (status = 200, body = UsageAggregationListResult),
        (status = 400, description = "As the tenant API, plus SubscriberIdIsNotDirectTenant", body = super::error::ErrorResponse),
        (status = 401, body = super::error::ErrorResponse),
        (status = 403, description = "Not an operator token", body = super::error::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn provider_usage(
    state: &AppState,
    caller: &Caller,
    provider_subscription_id: &str,
    request: &UsageRequest,
) -> Result<Listing, ApiError> {
    caller.require(&[Role::Operator])?;
    if let Some(expected) = &state.settings.provider_subscription_id
        && !expected.eq_ignore_ascii_case(provider_subscription_id)
    {
        return Err(ApiError::forbidden(format!(
            "'{provider_subscription_id}' is not the provider subscription."
        )));
    }
    let scope = match request.param("subscriberId").filter(|s| !s.is_empty()) {
        None => SubscriptionScope::All,
        Some(subscriber) => {
            check_id(subscriber, MAX_ID_LEN).map_err(|problem| {
                ApiError::invalid_property("subscriberId", format!("it {problem}"))
            })?;
            if !state.store.subscription_exists(subscriber).await? {
                return Err(ApiError::bad_request(
                    "SubscriberIdIsNotDirectTenant",
                    format!(
                        "The subscriber '{subscriber}' is not a direct tenant of this provider."
                    ),
                ));
            }
            SubscriptionScope::One(subscriber.into())
        }
    };
    list(state, UsageApi::Provider, scope, request).await
}

/// `GET /subscriptions/{id}/providers/{namespace}/{resource}`: dispatches to the
/// tenant or provider API, matching the segments case-insensitively.
pub async fn route(
    State(state): State<AppState>,
    Path((subscription_id, namespace, resource)): Path<(String, String, String)>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Response, ApiError> {
    let api = if namespace.eq_ignore_ascii_case("Microsoft.Commerce")
        && resource.eq_ignore_ascii_case("UsageAggregates")
    {
        UsageApi::Tenant
    } else if namespace.eq_ignore_ascii_case("Microsoft.Commerce.Admin")
        && resource.eq_ignore_ascii_case("subscriberUsageAggregates")
    {
        UsageApi::Provider
    } else {
        return Err(super::not_found(uri.path()));
    };
    let caller = caller?;
    if subscription_id.trim().is_empty() {
        return Err(subscription_missing());
    }
    // Refused, not trimmed: " sub-1" is not the subscription "sub-1".
    check_id(&subscription_id, MAX_ID_LEN)
        .map_err(|problem| ApiError::invalid_property("subscriptionId", format!("it {problem}")))?;
    let subscription_id = subscription_id.as_str();
    let request = UsageRequest::new(&state, uri.path(), uri.query(), &headers)?;
    let listing = match api {
        UsageApi::Tenant => tenant_usage(&state, &caller, subscription_id, &request).await?,
        UsageApi::Provider => provider_usage(&state, &caller, subscription_id, &request).await?,
    };
    Ok(listing.render(subscription_id))
}

/// 400 `SubscriptionIdMissingInRequest`.
pub fn subscription_missing() -> ApiError {
    ApiError::bad_request(
        "SubscriptionIdMissingInRequest",
        "The request URL does not carry a subscription id.",
    )
}

/// A usage request's query parameters and what its links are built from.
pub struct UsageRequest {
    /// Decoded `(name, value)` pairs in request order.
    params: Vec<(String, String)>,
    /// This resource's path, the path of its `nextLink`.
    path: String,
    /// The request's `Host`, checked only when a `nextLink` is written: a
    /// one-page answer is served whatever name the client used.
    host: Option<String>,
    page_size: usize,
}

impl UsageRequest {
    fn new(
        state: &AppState,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<Self, ApiError> {
        let params: Vec<(String, String)> =
            url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let request = UsageRequest {
            params,
            path: path.to_owned(),
            host: headers
                .get(header::HOST)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            page_size: state.settings.page_size,
        };
        match request.param("api-version") {
            None => Err(ApiError::bad_request(
                "NoApiVersion",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )),
            Some(API_VERSION) => Ok(request),
            Some(other) => Err(ApiError::invalid_property(
                "api-version",
                format!("'{other}' is not supported; the supported version is '{API_VERSION}'"),
            )),
        }
    }

    /// The first value of a parameter, by case-insensitive name.
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The window, granularity and detail level, checked as Azure checks them.
    fn query(&self, scope: SubscriptionScope) -> Result<AggregateQuery, ApiError> {
        let granularity = match self.param("aggregationGranularity") {
            None => Granularity::Daily,
            Some(value) => Granularity::parse(value).ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidAggregationGranularity",
                    format!("The aggregation granularity '{value}' is not valid; use 'Daily' or 'Hourly'."),
                )
            })?,
        };
        let boundary = match granularity {
            Granularity::Hourly => "an hour boundary",
            Granularity::Daily => "midnight UTC (Daily granularity)",
        };
        let time = |name: &str| -> Result<_, ApiError> {
            let value = self
                .param(name)
                .ok_or_else(|| ApiError::invalid_property(name, "it is required"))?;
            let time = parse_time(value).ok_or_else(|| {
                ApiError::invalid_property(
                    name,
                    format!("{} is not an ISO-8601 time {YEAR_RANGE}", quote(value)),
                )
            })?;
            if !granularity.is_boundary(time) {
                return Err(ApiError::invalid_property(
                    name,
                    format!("'{value}' is not on {boundary}"),
                ));
            }
            Ok(time)
        };
        let reported_start = time("reportedStartTime")?;
        let reported_end = time("reportedEndTime")?;
        if reported_end <= reported_start {
            return Err(ApiError::invalid_property(
                "reportedEndTime",
                "it must be after reportedStartTime",
            ));
        }
        let show_details = match self.param("showDetails") {
            None => true,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => {
                return Err(ApiError::invalid_property(
                    "showDetails",
                    format!("'{v}' is not true or false"),
                ));
            }
        };
        Ok(AggregateQuery {
            scope,
            reported_start,
            reported_end,
            granularity,
            show_details,
            page_size: self.page_size,
        })
    }

    /// The URL of the next page: this request with the new token, on the
    /// base [`super::next_link::link_base`] allows.
    fn next_link(&self, settings: &Settings, token: &str) -> Result<String, ApiError> {
        let base = super::next_link::link_base(settings, self.host.as_deref())?;
        let mut url = Url::parse(&format!("{base}{}", self.path)).map_err(|e| {
            ApiError::bad_request(
                "InvalidHost",
                format!("No link can be built on '{base}': {e}."),
            )
        })?;
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in self
                .params
                .iter()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("continuationToken"))
            {
                pairs.append_pair(name, value);
            }
            pairs.append_pair("continuationToken", token);
        }
        Ok(url.into())
    }
}

/// A page of rows and the link to the next one, ready to render.
pub struct Listing {
    api: UsageApi,
    rows: Vec<AggregateRow>,
    next_link: Option<String>,
}

impl Listing {
    /// Serialises the page; `path_subscription` is the subscription of the URL.
    fn render(&self, path_subscription: &str) -> Response {
        let names = RowNames {
            namespace: self.api.namespace(),
            row_type: self.api.row_type(),
            id_owner: match self.api {
                UsageApi::Tenant => None,
                UsageApi::Provider => Some(path_subscription),
            },
        };
        let body = usage_json::page(&names, &self.rows, self.next_link.as_deref());
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }
}

async fn list(
    state: &AppState,
    api: UsageApi,
    scope: SubscriptionScope,
    request: &UsageRequest,
) -> Result<Listing, ApiError> {
    let query = request.query(scope)?;
    // The store's clock stamps reported times: by a replica's own clock, which
    // may run ahead, an hour still being written would look passed.
    if query.reported_end > state.store.clock().await? {
        return Err(ApiError::bad_request(
            "RequestEndTimeIsInFuture",
            "The reportedEndTime is in the future; usage can only be queried for reported times that have passed.",
        ));
    }
    let after = match request.param("continuationToken").filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(paging::decode(&query, token).ok_or_else(|| {
            ApiError::invalid_property(
                "continuationToken",
                "it is malformed or was issued for another query",
            )
        })?),
    };
    let page = state.store.aggregates(&query, after).await?;
    let next_link = page
        .next
        .map(|position| request.next_link(&state.settings, &paging::encode(&query, position)))
        .transpose()?;
    Ok(Listing {
        api,
        rows: page.rows,
        next_link,
    })
}

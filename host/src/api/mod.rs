//! The HTTP API: ingest, the Azure-compatible usage API, the meter catalog and
//! operations endpoints, as one axum [`Router`].
//!
//! | route | who |
//! |---|---|
//! | `POST /v1/usage` | reporter, operator |
//! | `GET /subscriptions/{id}/providers/Microsoft.Commerce/UsageAggregates` | tenant (own subscriptions), operator |
//! | `GET /subscriptions/{id}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates` | operator |
//! | `GET /v1/meters`, `PUT /v1/meters/{id}` | any token; operator |
//! | `/v1/adapters…`: install, list, show, upgrade, enable, disable, remove | operator |
//! | `/v1/adapters/{name}/runs…`, `/v1/adapters/{name}/documents…`, `POST /v1/adapters/{name}/verify` | operator |
//! | `GET /v1/usage/summary`, `GET /v1/subscriptions` | tenant (own subscriptions), operator |
//! | `GET /v1/subscriptions/{id}/documents…`: documents adapters publish to tenants | tenant (own subscriptions), operator |
//! | `GET /v1/overview`, `/v1/tokens…` | operator |
//! | `GET`, `PUT`, `DELETE /v1/access/grants`: identity providers' subjects given subscriptions | operator |
//! | `/v1/session`: sign in (a token in the body), who, sign out | operator, tenant |
//! | `/v1/session/providers`, `…/sso`, `…/callback`: sign in through an identity provider | anyone (a browser) |
//! | `GET /`, `GET /console/…`: the web console ([`crate::console`]) | anyone |
//! | `GET /metrics` | operator |
//! | `GET /openapi.json` | any token |
//! | `GET /healthz` | anyone (the only open route) |
//!
//! Every route that takes a token also takes the console's session cookie
//! ([`session`]; see `auth` for the CSRF rule).
//!
//! `next_link` decides the base of the usage API's `nextLink`s (and which
//! `Host` names it may use); [`usage_json`] writes the usage API's pages
//! (public so that the usage benchmark can time it alone); [`server`] serves
//! the router with its limits.

mod access;
mod auth;
mod error;
mod ingest;
mod installations;
mod meters;
mod next_link;
mod ops;
pub mod overview;
mod paging;
mod runs;
pub mod server;
pub mod session;
mod sign_in;
mod subscriptions;
mod tenant_documents;
mod tokens;
mod usage_aggregates;
pub mod usage_json;
pub mod usage_summary;
mod verify;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, OriginalUri};
use axum::http::StatusCode;
use axum::routing::{get, post, put};

pub use installations::{InstallationView, MAX_INSTALL_BYTES};
pub use runs::{ProvenanceView, RequestedRun, RunDetail, RunView};
pub use tenant_documents::{MAX_TENANT_DOCUMENTS, MAX_TENANT_RANGE_DAYS};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use error::{ApiError, ErrorBody, ErrorResponse};
pub use ingest::IngestResponse;
pub use usage_aggregates::{
    API_VERSION, UsageAggregation, UsageAggregationListResult, UsageSample,
};

use crate::exports::Exports;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::store::Store;

/// Largest ingest body accepted by default: 32 MiB (about 100,000 records).
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Rows per page of the usage API (Azure's limit).
pub const PAGE_SIZE: usize = 1_000;

/// What the API needs besides the store.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL clients reach the host at: the base of every `nextLink`.
    pub public_url: Option<url::Url>,
    /// Without `public_url`: the `Host` values (`name[:port]`) a `nextLink`
    /// may be built on; a usage request naming another is refused (400
    /// `InvalidHost`) when its answer has more than one page. `tally serve`
    /// adds its listen address (unless it is unspecified, `0.0.0.0`).
    pub allowed_hosts: Vec<String>,
    /// When set, the provider API answers only on this provider subscription.
    pub provider_subscription_id: Option<String>,
    /// Largest ingest body, in bytes.
    pub max_body_bytes: usize,
    /// Most records and hour parts in one ingest request.
    pub ingest_limits: crate::usage::BatchLimits,
    /// Rows per usage API page (at most [`PAGE_SIZE`]).
    pub page_size: usize,
    /// The database backend's name (`sqlite` or `postgres`), as the
    /// console's overview shows it.
    pub backend: &'static str,
    /// How long usage events are kept (`[retention] usage_events`): usage
    /// that ended longer ago is refused at ingest. `None`: kept forever.
    pub usage_events_retention: Option<std::time::Duration>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            public_url: None,
            allowed_hosts: Vec::new(),
            provider_subscription_id: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ingest_limits: crate::usage::BatchLimits::default(),
            page_size: PAGE_SIZE,
            backend: "sqlite",
            usage_events_retention: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// Billing adapters; `None` on a host that serves usage only.
    pub exports: Option<Arc<Exports>>,
    /// The identity providers whose JWTs are accepted (none by default).
    pub identity: Arc<Identity>,
}

impl AppState {
    /// State over a store, with fresh metrics.
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        AppState {
            store,
            settings: Arc::new(settings),
            metrics: Arc::new(Metrics::default()),
            exports: None,
            identity: Arc::new(Identity::default()),
        }
    }

    /// The same state, accepting the JWTs of `identity`'s issuers.
    pub fn with_identity(self, identity: Arc<Identity>) -> Self {
        AppState { identity, ..self }
    }

    /// The same state, running billing adapters with `exports`.
    pub fn with_exports(self, exports: Arc<Exports>) -> Self {
        AppState {
            // One registry: /metrics shows the runs too.
            metrics: exports.metrics.clone(),
            exports: Some(exports),
            ..self
        }
    }

    /// The host's exports, or 503 on a host built without them.
    fn exports(&self) -> Result<&Exports, ApiError> {
        self.exports.as_deref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "AdaptersUnavailable",
                "This host does not run billing adapters.",
            )
        })
    }
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "tally", description = "Usage metering for private clouds, with an Azure-compatible usage API."),
    paths(
        ingest::ingest_usage,
        usage_aggregates::tenant_usage,
        usage_aggregates::provider_usage,
        meters::list_meters,
        meters::put_meter,
        installations::list_adapters,
        installations::show_adapter,
        installations::install_adapter,
        installations::upgrade_adapter,
        installations::enable_adapter,
        installations::disable_adapter,
        installations::remove_adapter,
        runs::list_runs,
        runs::request_runs,
        runs::show_run,
        runs::run_document,
        runs::list_documents,
        runs::joined_document,
        verify::verify_adapter,
        ops::healthz,
        ops::metrics,
        ops::openapi,
        session::sign_in,
        session::show_session,
        session::sign_out,
        overview::overview,
        subscriptions::list_subscriptions,
        tenant_documents::list_documents,
        tenant_documents::run_document,
        tenant_documents::joined_document,
        usage_summary::usage_summary,
        tokens::list_tokens,
        tokens::create_token,
        tokens::revoke_token,
        access::list_grants,
        access::put_grant,
        access::revoke_grant,
    ),
    modifiers(&BearerAuth, &CommonResponses)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The errors any operation may answer, added to each that does not list
/// them itself, so that the document names every status the host sends:
/// `401` where a token is needed, `403` where it must have a role,
/// `400` where a path, query string or body can be malformed (axum's
/// rejections, in ARM shape), `413` where there is a body, `409` where an
/// adapter's stored manifest is read, `500` (stored data that does not read
/// back, a write the store refuses) and `503` everywhere (the store does not
/// answer).
struct CommonResponses;

/// Operations any valid token may call: no `403`.
const ANY_TOKEN_OPERATIONS: [&str; 2] = ["list_meters", "openapi"];

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorResponse")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let reads_a_manifest = path.starts_with("/v1/adapters/{name}");
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let secured = operation.security.is_some();
                let any_token = operation
                    .operation_id
                    .as_deref()
                    .is_some_and(|id| ANY_TOKEN_OPERATIONS.contains(&id));
                let has_body = operation.request_body.is_some();
                let takes_input =
                    has_body || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let common = [
                    (secured, "401", "No token, or an unknown one"),
                    (
                        secured && !any_token,
                        "403",
                        "The token's role may not do this",
                    ),
                    (takes_input, "400", "A malformed path, query string or body"),
                    (has_body, "413", "The body is larger than the limit"),
                    (
                        reads_a_manifest,
                        "409",
                        "InvalidStoredManifest: the adapter's stored manifest no longer passes \
                         the host's checks; upgrade or reinstall it",
                    ),
                    (
                        true,
                        "500",
                        "StoredDataCorrupt (stored data does not read back) or \
                         StoreRefusedChange (the store refused a write): a retry will not help",
                    ),
                    (
                        true,
                        "503",
                        "The store does not answer; retry (Retry-After)",
                    ),
                ];
                for (_, status, description) in common.into_iter().filter(|(applies, ..)| *applies)
                {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// Builds the API.
pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    Router::new()
        .route(
            "/v1/usage",
            post(ingest::ingest_usage).layer(DefaultBodyLimit::max(max_body)),
        )
        .route(
            "/subscriptions/{subscription_id}/providers/{namespace}/{resource}",
            get(usage_aggregates::route),
        )
        .route("/v1/meters", get(meters::list_meters))
        .route("/v1/meters/{meter_id}", put(meters::put_meter))
        .route(
            "/v1/adapters",
            get(installations::list_adapters)
                .post(installations::install_adapter)
                .layer(DefaultBodyLimit::max(MAX_INSTALL_BYTES)),
        )
        .route(
            "/v1/adapters/{name}",
            get(installations::show_adapter)
                .put(installations::upgrade_adapter)
                .delete(installations::remove_adapter)
                .layer(DefaultBodyLimit::max(MAX_INSTALL_BYTES)),
        )
        .route(
            "/v1/adapters/{name}/enable",
            post(installations::enable_adapter),
        )
        .route(
            "/v1/adapters/{name}/disable",
            post(installations::disable_adapter),
        )
        .route(
            "/v1/adapters/{name}/runs",
            get(runs::list_runs).post(runs::request_runs),
        )
        .route("/v1/adapters/{name}/runs/{id}", get(runs::show_run))
        .route(
            "/v1/adapters/{name}/runs/{id}/documents/{document}",
            get(runs::run_document),
        )
        .route("/v1/adapters/{name}/documents", get(runs::list_documents))
        .route(
            "/v1/adapters/{name}/documents/{document}",
            get(runs::joined_document),
        )
        .route("/v1/adapters/{name}/verify", post(verify::verify_adapter))
        .route(
            "/v1/session",
            get(session::show_session)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route("/v1/session/providers", get(sign_in::providers))
        .route("/v1/session/sso", get(sign_in::start))
        .route("/v1/session/callback", get(sign_in::callback))
        .route("/v1/overview", get(overview::overview))
        .route("/v1/subscriptions", get(subscriptions::list_subscriptions))
        .route(
            "/v1/subscriptions/{subscription_id}/documents",
            get(tenant_documents::list_documents),
        )
        .route(
            "/v1/subscriptions/{subscription_id}/adapters/{name}/runs/{id}/documents/{document}",
            get(tenant_documents::run_document),
        )
        .route(
            "/v1/subscriptions/{subscription_id}/adapters/{name}/documents/{document}",
            get(tenant_documents::joined_document),
        )
        .route("/v1/usage/summary", get(usage_summary::usage_summary))
        .route(
            "/v1/tokens",
            get(tokens::list_tokens).post(tokens::create_token),
        )
        .route(
            "/v1/tokens/{id}",
            axum::routing::delete(tokens::revoke_token),
        )
        .route(
            "/v1/access/grants",
            get(access::list_grants)
                .put(access::put_grant)
                .delete(access::revoke_grant),
        )
        .merge(crate::console::router())
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::track,
        ))
        .fallback(fallback)
        .layer(axum::middleware::from_fn(refuse_control_characters))
        .layer(axum::middleware::from_fn(error::arm_errors))
        .layer(
            // One INFO line per request: the access log.
            // `subject` is filled in by the `Caller` extractor: who made the request.
            TraceLayer::new_for_http()
                .make_span_with(|request: &axum::extract::Request| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %request.uri(),
                        subject = tracing::field::Empty,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .with_state(state)
}

/// Middleware: a request whose path or query string carries a control
/// character (percent-encoded or not) is refused with a 400 before any
/// handler reads an id from it. No id holds one, and on PostgreSQL a NUL
/// would reach the database as a failed query, answered as a retryable 503.
async fn refuse_control_characters(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let has_control = |text: &str| {
        // Decoding as a form also decodes a path: only the characters matter here.
        url::form_urlencoded::parse(text.as_bytes()).any(|(name, value)| {
            crate::text::has_control(&name) || crate::text::has_control(&value)
        })
    };
    let uri = request.uri();
    if has_control(uri.path()) || uri.query().is_some_and(has_control) {
        return ApiError::bad_request(
            "InvalidRequest",
            "The URL carries a control character, which no id or parameter may hold.",
        )
        .into_response();
    }
    next.run(request).await
}

/// 404 in ARM shape; a usage path with a blank subscription is a 400 as on Azure.
async fn fallback(OriginalUri(uri): OriginalUri) -> ApiError {
    let path = uri.path().to_ascii_lowercase();
    if path.starts_with("/subscriptions//providers/")
        || path == "/subscriptions/"
        || path == "/subscriptions"
    {
        return usage_aggregates::subscription_missing();
    }
    not_found(uri.path())
}

fn not_found(path: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("No resource at '{path}'."),
    )
}

//! Installed adapters over REST (operators only): install, list, show,
//! upgrade, enable, disable, remove.
//!
//! An install is `multipart/form-data` with a `manifest` part (the TOML) and
//! a `component` part (the `.wasm`); the component may be left out when the
//! host already has one with the manifest's sha256 (the same component
//! installed under a second name).

use axum::Json;
use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use super::runs::{RunView, run_view};
use crate::auth::Role;
use crate::exports::{InstallError, InstallationStatus, LoadedInstallation, manifest};
use crate::store::exports::AdapterDescription;

/// Largest install request: components from toolchains that embed an
/// interpreter (Python, JavaScript) weigh tens of MiB.
pub const MAX_INSTALL_BYTES: usize = 128 << 20;

/// An installation as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallationView {
    pub name: String,
    pub enabled: bool,
    /// What the adapter says it is.
    pub adapter: AdapterDescription,
    /// The contract version it targets.
    pub world: String,
    pub sha256: String,
    /// `hourly`, `daily` or `monthly`.
    pub window: String,
    pub granularity: String,
    /// Wait after a window closes, e.g. `2h`.
    pub lag: String,
    /// Every window before it is exported.
    pub watermark: DateTime<Utc>,
    /// `["*"]` or the subscription ids it may read.
    pub subscriptions: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// Whether the documents it writes for a subscription are published to
    /// that subscription's tenants (`GET /v1/subscriptions/{id}/documents`).
    pub publish_to_tenants: bool,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A failed run that holds the watermark until it is run again.
    pub held_by: Option<RunView>,
    /// The manifest as installed, each value under `[secrets]` shown as
    /// `"***"` (on `GET /v1/adapters/{name}`, install and upgrade only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// The installed adapters.
#[utoipa::path(get, path = "/v1/adapters", tag = "adapters",
    responses((status = 200, body = Vec<InstallationView>), (status = 403, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn list_adapters(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<InstallationView>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let statuses = state.exports()?.statuses().await?;
    Ok(Json(statuses.iter().map(|s| view(s, false)).collect()))
}

/// One installed adapter, with its manifest.
#[utoipa::path(get, path = "/v1/adapters/{name}", tag = "adapters",
    params(("name" = String, Path)),
    responses((status = 200, body = InstallationView), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn show_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<InstallationView>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    Ok(Json(view(&exports.status(installation).await?, true)))
}

/// Installs an adapter: `manifest` (TOML) and `component` (wasm) parts.
#[utoipa::path(post, path = "/v1/adapters", tag = "adapters",
    request_body(content_type = "multipart/form-data", description = "`manifest` (TOML) and `component` (wasm, optional if already stored)"),
    responses((status = 201, body = InstallationView), (status = 400, body = ErrorResponse),
              (status = 409, body = ErrorResponse), (status = 422, body = ErrorResponse),
              (status = 503, description = "InstallsBusy: too many installs being checked; try again later", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn install_adapter(
    State(state): State<AppState>,
    caller: Caller,
    multipart: Multipart,
) -> Result<(StatusCode, Json<InstallationView>), ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let (manifest, component) = read_parts(multipart).await?;
    let installed = exports
        .install(&manifest, component)
        .await
        .map_err(install_error)?;
    let status = exports.status(installed.installation).await?;
    Ok((StatusCode::CREATED, Json(view(&status, true))))
}

/// Upgrades an adapter (new manifest, new component or both); its runs,
/// documents and watermark stay.
#[utoipa::path(put, path = "/v1/adapters/{name}", tag = "adapters",
    params(("name" = String, Path)),
    request_body(content_type = "multipart/form-data", description = "`manifest` (TOML) and `component` (wasm, optional if already stored)"),
    responses((status = 200, body = InstallationView), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse), (status = 422, body = ErrorResponse),
              (status = 503, description = "InstallsBusy: too many installs being checked; try again later", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn upgrade_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Result<Json<InstallationView>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let (manifest, component) = read_parts(multipart).await?;
    let installed = exports
        .upgrade(&name, &manifest, component)
        .await
        .map_err(install_error)?;
    let status = exports.status(installed.installation).await?;
    Ok(Json(view(&status, true)))
}

/// Enables an adapter: the scheduler runs its windows again.
#[utoipa::path(post, path = "/v1/adapters/{name}/enable", tag = "adapters",
    params(("name" = String, Path)),
    responses((status = 200, body = InstallationView), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn enable_adapter(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
) -> Result<Json<InstallationView>, ApiError> {
    set_enabled(state, caller, name, true).await
}

/// Disables an adapter: no new runs start (a run in progress finishes).
#[utoipa::path(post, path = "/v1/adapters/{name}/disable", tag = "adapters",
    params(("name" = String, Path)),
    responses((status = 200, body = InstallationView), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn disable_adapter(
    state: State<AppState>,
    caller: Caller,
    name: Path<String>,
) -> Result<Json<InstallationView>, ApiError> {
    set_enabled(state, caller, name, false).await
}

async fn set_enabled(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    enabled: bool,
) -> Result<Json<InstallationView>, ApiError> {
    caller.require(&[Role::Operator])?;
    let status = state.exports()?.set_enabled(&name, enabled).await?;
    Ok(Json(view(&status, false)))
}

/// Removes an adapter with its runs and documents.
#[utoipa::path(delete, path = "/v1/adapters/{name}", tag = "adapters",
    params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn remove_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Operator])?;
    state.exports()?.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An installation as the API shows it.
fn view(status: &InstallationStatus, with_manifest: bool) -> InstallationView {
    let LoadedInstallation {
        installation,
        manifest,
    } = &status.loaded;
    InstallationView {
        name: installation.name.clone(),
        enabled: installation.enabled,
        adapter: installation.description.clone(),
        world: format!("tally:billing@{}", manifest.world_version),
        sha256: installation.component_sha256.clone(),
        window: format!("{:?}", manifest.window).to_ascii_lowercase(),
        granularity: format!("{:?}", manifest.granularity).to_ascii_lowercase(),
        lag: humantime::format_duration(manifest.lag).to_string(),
        watermark: installation.watermark,
        publish_to_tenants: installation.publish_to_tenants,
        subscriptions: match &manifest.grant {
            crate::sandbox::SubscriptionGrant::All => vec!["*".into()],
            crate::sandbox::SubscriptionGrant::Only(ids) => ids.clone(),
        },
        allowed_outbound_hosts: manifest
            .allowed_outbound_hosts
            .iter()
            .map(ToString::to_string)
            .collect(),
        installed_at: installation.installed_at,
        updated_at: installation.updated_at,
        held_by: status
            .held_by
            .as_ref()
            .map(|run| run_view(installation, run)),
        manifest: with_manifest.then(|| manifest::redact_secrets(&installation.manifest)),
    }
}

/// The `manifest` and optional `component` parts of an install request.
async fn read_parts(mut multipart: Multipart) -> Result<(String, Option<Vec<u8>>), ApiError> {
    let bad = |message: String| ApiError::bad_request("InvalidRequest", message);
    let (mut manifest, mut component) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(part_error)? {
        match field.name() {
            Some("manifest") => manifest = Some(field.text().await.map_err(part_error)?),
            Some("component") => component = Some(field.bytes().await.map_err(part_error)?.into()),
            other => {
                return Err(bad(format!(
                    "Unexpected part {other:?}: send 'manifest' and 'component'."
                )));
            }
        }
    }
    let manifest = manifest.ok_or_else(|| bad("The 'manifest' part is missing.".into()))?;
    Ok((manifest, component))
}

/// A body that is over the limit is a 413, anything else malformed a 400.
fn part_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    let status = error.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "RequestBodyTooLarge",
            format!("An install request may hold at most {MAX_INSTALL_BYTES} bytes."),
        );
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "InvalidRequest",
        format!("The multipart body is malformed: {}.", error.body_text()),
    )
}

fn install_error(error: InstallError) -> ApiError {
    let message = error.to_string();
    let (status, code) = match error {
        InstallError::Store(error) => return error.into(),
        InstallError::Manifest(_) => (StatusCode::BAD_REQUEST, "InvalidManifest"),
        InstallError::NotFound(_) => (StatusCode::NOT_FOUND, "AdapterNotFound"),
        InstallError::Sha256Mismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "Sha256Mismatch"),
        InstallError::MissingComponent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "ComponentMissing"),
        InstallError::Component(_) => (StatusCode::UNPROCESSABLE_ENTITY, "InvalidComponent"),
        InstallError::WorldMismatch { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "WorldMismatch"),
        InstallError::InvalidConfig(_) => (StatusCode::UNPROCESSABLE_ENTITY, "InvalidConfig"),
        InstallError::Adapter(_) => (StatusCode::UNPROCESSABLE_ENTITY, "AdapterFailed"),
        InstallError::Description(_) => (StatusCode::BAD_REQUEST, "InvalidDescription"),
        InstallError::Busy(..) => (StatusCode::SERVICE_UNAVAILABLE, "InstallsBusy"),
        InstallError::WindowChanged(_) => (StatusCode::UNPROCESSABLE_ENTITY, "WindowChanged"),
    };
    ApiError::new(status, code, message)
}

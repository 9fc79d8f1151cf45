//! The web console: the page that operators and tenants use, served by the
//! host itself from files embedded in the binary ([`assets`]), so that an
//! air-gapped cloud needs nothing from anywhere else.
//!
//! `GET /` answers the page; `GET /console/{file}` its scripts and styles.
//! The page talks only to the API (signing in through [`crate::api`]'s
//! `/v1/session`), and every answer here carries a strict
//! Content-Security-Policy: scripts and styles from this origin only, no
//! inline code, no `eval`, no frames.

pub mod assets;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use assets::Asset;

/// The Content-Security-Policy of the console's answers.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The console's routes.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console/{*file}", get(file))
}

async fn index(headers: HeaderMap) -> Response {
    serve(assets::INDEX, &headers)
}

async fn file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&file) {
        Some(asset) => serve(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            with_security_headers(HeaderMap::new()),
            "No such console file.",
        )
            .into_response(),
    }
}

/// An asset, or `304` when the browser's copy is current (`ETag`).
fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let mut headers = with_security_headers(HeaderMap::new());
    headers.insert(header::ETAG, HeaderValue::from_str(etag).expect("hex"));
    // Revalidated on each load, so that an upgraded host is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let current = request
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag));
    if current {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    (headers, asset.bytes).into_response()
}

/// The headers every console answer carries.
fn with_security_headers(mut headers: HeaderMap) -> HeaderMap {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
}

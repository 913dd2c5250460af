//! The server stage: a small axum app with the JSON API and the search page.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use dossier_schema::{ApiErrorBody, Health, Suggestions};
use serde::Deserialize;

use crate::query::{Engine, QueryError};

/// Longest query accepted, in bytes.
pub const MAX_QUERY: usize = 512;
/// Largest page of dossiers.
pub const MAX_PER_PAGE: usize = 50;

/// Shared by every request.
pub struct AppState {
    /// The search engine.
    pub engine: Engine,
}

/// An error answered as JSON with a status code.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiErrorBody { error: self.1, status: self.0.as_u16() })).into_response()
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        tracing::error!("query failed: {e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the search failed; see the server log".into())
    }
}

/// `GET /api/search` parameters.
#[derive(Deserialize)]
pub struct SearchParams {
    /// The query.
    q: Option<String>,
    /// 0-based page.
    page: Option<usize>,
    /// Dossiers per page.
    per_page: Option<usize>,
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the request was cancelled".into()))?
}

async fn search(State(st): State<Arc<AppState>>, Query(p): Query<SearchParams>) -> Result<impl IntoResponse, ApiError> {
    let q = p.q.unwrap_or_default();
    if q.len() > MAX_QUERY {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("the query is longer than {MAX_QUERY} bytes")));
    }
    if q.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "give a query as ?q=…".into()));
    }
    let per_page = p.per_page.unwrap_or(10);
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("per_page must be between 1 and {MAX_PER_PAGE}")));
    }
    let page = p.page.unwrap_or(0).min(10_000);
    let resp = blocking(move || Ok(st.engine.search(&q, page, per_page)?)).await?;
    Ok(Json(resp))
}

/// `GET /api/suggest` parameters.
#[derive(Deserialize)]
pub struct SuggestParams {
    /// What has been typed so far.
    q: Option<String>,
    /// Most suggestions (default 8, at most 20).
    limit: Option<usize>,
}

async fn suggest(
    State(st): State<Arc<AppState>>,
    Query(p): Query<SuggestParams>,
) -> Result<impl IntoResponse, ApiError> {
    let q = p.q.unwrap_or_default();
    if q.len() > MAX_QUERY {
        return Err(ApiError(StatusCode::BAD_REQUEST, format!("the query is longer than {MAX_QUERY} bytes")));
    }
    let limit = p.limit.unwrap_or(8);
    if limit == 0 || limit > 20 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "limit must be between 1 and 20".into()));
    }
    let s = blocking(move || Ok(st.engine.suggest(&q, limit)?)).await?;
    Ok(Json(Suggestions { suggestions: s }))
}

async fn customer(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    if id.len() > 64 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "not a customer id".into()));
    }
    let shown = id.clone();
    match blocking(move || Ok(st.engine.customer(&id)?)).await? {
        Some(d) => Ok(Json(d)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no customer {shown}"))),
    }
}

async fn record(State(st): State<Arc<AppState>>, Path(key): Path<String>) -> Result<impl IntoResponse, ApiError> {
    if key.len() > 2048 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "record key too long".into()));
    }
    let shown = key.clone();
    match blocking(move || Ok(st.engine.record(&key)?)).await? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no record {shown}"))),
    }
}

async fn runs(State(st): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let r = blocking(move || Ok(st.engine.with_state(|s| s.runs(20, 100))?.map_err(QueryError::from)?)).await?;
    Ok(Json(r))
}

async fn health() -> impl IntoResponse {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

async fn page() -> impl IntoResponse {
    Html(include_str!("web/index.html"))
}

async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such route; the API is described at /api/openapi.json".into())
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi))
        .route("/api/search", get(search))
        .route("/api/suggest", get(suggest))
        .route("/api/customers/{id}", get(customer))
        .route("/api/records/{*key}", get(record))
        .route("/api/runs", get(runs))
        .fallback(not_found)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

/// Serves until Ctrl-C.
pub async fn serve(engine: Engine, listen: &str) -> std::io::Result<()> {
    let state = Arc::new(AppState { engine });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    eprintln!("dossier is serving http://{addr}/  (Ctrl-C stops it)");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

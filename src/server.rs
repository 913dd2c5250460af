//! The server stage: a small axum app with the JSON API and the search page. Every route
//! but `/api/health` and the page itself needs an API key; what a key's role may not see
//! does not exist in any answer, and every look at a customer or record is audited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use dossier_schema::{ApiErrorBody, Health, Suggestions};
use serde::{Deserialize, Serialize};

use crate::access::{Viewer, hash_key, parse_key_hash};
use crate::config::Config;
use crate::query::{Engine, QueryError};
use crate::state::{AuditEntry, AuditFilter, State as Store};

/// Longest query accepted, in bytes.
pub const MAX_QUERY: usize = 512;
/// Largest page of dossiers.
pub const MAX_PER_PAGE: usize = 50;
/// Highest page number.
pub const MAX_PAGE: usize = 10_000;
/// Largest request body (the admin routes' JSON).
const MAX_BODY: usize = 16 * 1024;
/// Longest a client may take to send its request headers before it is disconnected.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;

/// Who may use the API: key hashes from the config and the state store, and the roles they
/// grant.
pub struct Auth {
    cfg: Config,
    /// Hash → (key name, role), from `[[keys]]` and keys added at run time (benchmarks).
    keys: HashMap<String, (String, String)>,
}

impl Auth {
    /// The keys of the config; keys in the state store are looked up per request, so keys
    /// added or revoked while serving take effect at once.
    pub fn new(cfg: &Config) -> Auth {
        let keys = cfg
            .keys
            .iter()
            .filter(|k| parse_key_hash(&k.hash).is_some())
            .map(|k| (k.hash.to_ascii_lowercase(), (k.name.clone(), k.role.clone())))
            .collect();
        Auth { cfg: cfg.clone(), keys }
    }

    /// Accepts `key` for `role` in this process only (benchmarks and tests).
    pub fn allow(&mut self, name: &str, key: &str, role: &str) {
        self.keys.insert(hash_key(key), (name.to_string(), role.to_string()));
    }

    /// The viewer a presented key makes, or why it is refused.
    fn viewer(&self, engine: &Engine, key: &str) -> Result<Viewer, ApiError> {
        let refused =
            || ApiError(StatusCode::UNAUTHORIZED, "the API key is not valid (never issued, or revoked)".into());
        if key.len() > 256 {
            return Err(refused());
        }
        let hash = hash_key(key);
        let found = match self.keys.get(&hash) {
            Some(k) => Some(k.clone()),
            None => engine.with_state(|s| s.key_by_hash(&hash))?.map_err(QueryError::from)?,
        };
        let (name, role) = found.ok_or_else(refused)?;
        Viewer::for_role(&self.cfg, &name, &role).ok_or_else(|| {
            ApiError(
                StatusCode::FORBIDDEN,
                format!("the key's role `{role}` is not defined in the config; ask an administrator"),
            )
        })
    }
}

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The engine or state store failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The audit writer thread could not start.
    #[error("starting the audit writer: {0}")]
    Io(#[from] std::io::Error),
}

/// A request waiting for its audit entries to be committed.
type AuditJob = (Vec<AuditEntry>, crossbeam_channel::Sender<Result<(), String>>);

/// Appends to the audit log from one thread with group commit: requests queue their entries
/// and wait; the writer commits everything queued in one transaction and answers them all, so
/// a request is answered only once its entries are committed. The writer's commits never
/// checkpoint the WAL: a second thread does, once a second. Checkpoints inside commits (every
/// few hundred) waited for the disk while every request queued behind them, which cost a
/// quarter of the search throughput (910 against 1,175 searches/s at 10,000 customers).
pub struct AuditWriter {
    tx: crossbeam_channel::Sender<AuditJob>,
    /// Dropped with the writer, which stops the checkpoint thread.
    _stop: crossbeam_channel::Sender<()>,
}

impl AuditWriter {
    /// Starts the writer and the checkpointer, each on its own connection to the state store.
    pub fn start(mut store: Store, checkpointer: Store) -> Result<AuditWriter, ServerError> {
        store.manual_checkpoints().map_err(QueryError::from)?;
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        std::thread::Builder::new().name("audit-checkpoint".into()).spawn(move || {
            loop {
                let last = matches!(
                    stopped.recv_timeout(Duration::from_secs(1)),
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected)
                );
                if let Err(e) = checkpointer.checkpoint() {
                    tracing::warn!("audit log checkpoint: {e}");
                }
                if last {
                    break;
                }
            }
        })?;
        let (tx, rx) = crossbeam_channel::bounded::<AuditJob>(4096);
        std::thread::Builder::new().name("audit-writer".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let entries: Vec<AuditEntry> = batch.iter_mut().flat_map(|(e, _)| std::mem::take(e)).collect();
                let done = store.audit(&entries).map_err(|e| e.to_string());
                for (_, reply) in batch {
                    let _ = reply.send(done.clone());
                }
            }
        })?;
        Ok(AuditWriter { tx, _stop: stop })
    }

    /// Appends entries and waits until they are committed.
    pub fn write(&self, entries: Vec<AuditEntry>) -> Result<(), String> {
        let (reply, done) = crossbeam_channel::bounded(1);
        self.tx.send((entries, reply)).map_err(|_| "the audit writer stopped".to_string())?;
        done.recv().map_err(|_| "the audit writer stopped".to_string())?
    }
}

/// Shared by every request.
pub struct AppState {
    /// The search engine.
    pub engine: Engine,
    /// Who may ask.
    pub auth: Auth,
    /// The audit log's writer.
    pub audit: AuditWriter,
    /// The index runs of this server (scheduled and asked for), when it runs them.
    pub runs: Option<crate::schedule::Runs>,
    /// The configured sources' names.
    sources: Vec<String>,
    /// Request counts and latencies.
    metrics: crate::metrics::Metrics,
    /// The index folder, for its size.
    index_dir: std::path::PathBuf,
}

impl AppState {
    /// The state of a server over `engine` for `cfg`.
    pub fn new(cfg: &Config, engine: Engine) -> Result<AppState, ServerError> {
        let (_, state_path) = crate::pipeline::paths(cfg);
        let open = || Store::open(&state_path).map_err(QueryError::from);
        let audit = AuditWriter::start(open()?, open()?)?;
        let sources = cfg.sources.iter().map(|s| s.name.clone()).collect();
        Ok(AppState {
            engine,
            auth: Auth::new(cfg),
            audit,
            runs: None,
            sources,
            metrics: crate::metrics::Metrics::new(),
            index_dir: cfg.index_dir(),
        })
    }

    /// Writes audit entries; a request whose look cannot be recorded is refused.
    fn audit(&self, v: &Viewer, mut entries: Vec<AuditEntry>) -> Result<(), ApiError> {
        for e in &mut entries {
            e.who = v.who.clone();
            e.role = Some(v.role.clone());
            // The log must not hold what the masking hides, whoever typed it.
            e.query = e.query.as_deref().map(|q| self.engine.masker().text(q).into_owned());
        }
        self.audit.write(entries).map_err(|e| {
            tracing::error!("audit log: {e}");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "the audit log cannot be written; see the server log".into())
        })
    }
}

/// An error answered as JSON with a status code.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(ApiErrorBody { error: self.1, status: self.0.as_u16() })).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"dossier\""));
        }
        r
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        if matches!(e, QueryError::StaleViews) {
            return ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
        tracing::error!("query failed: {e}");
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, "the search failed; see the server log".into())
    }
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg.into())
}

fn bad_query(e: QueryRejection) -> ApiError {
    bad(format!("bad query parameters: {}", e.body_text()))
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

fn check_query(q: &str) -> Result<(), ApiError> {
    if q.len() > MAX_QUERY {
        return Err(bad(format!("the query is longer than {MAX_QUERY} bytes")));
    }
    if q.chars().any(|c| c.is_control() && c != '\t') {
        return Err(bad("the query holds control characters"));
    }
    Ok(())
}

async fn search(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    p: Result<Query<SearchParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(p) = p.map_err(bad_query)?;
    let q = p.q.unwrap_or_default();
    check_query(&q)?;
    if q.trim().is_empty() {
        return Err(bad("give a query as ?q=…"));
    }
    let per_page = p.per_page.unwrap_or(10);
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(bad(format!("per_page must be between 1 and {MAX_PER_PAGE}")));
    }
    let page = p.page.unwrap_or(0);
    if page > MAX_PAGE {
        return Err(bad(format!("page must be at most {MAX_PAGE}")));
    }
    let resp = blocking(move || {
        let r = st.engine.search_as(&v, &q, page, per_page)?;
        let entry = |customer: Option<String>| AuditEntry {
            action: "search".into(),
            customer,
            query: Some(q.clone()),
            detail: Some(format!("page {page}, {} customers", r.total)),
            ..Default::default()
        };
        let mut entries: Vec<AuditEntry> = r.dossiers.iter().map(|d| entry(d.id.clone())).collect();
        if entries.is_empty() {
            entries.push(entry(None));
        }
        st.audit(&v, entries)?;
        Ok(r)
    })
    .await?;
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
    Extension(v): Extension<Viewer>,
    p: Result<Query<SuggestParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(p) = p.map_err(bad_query)?;
    let q = p.q.unwrap_or_default();
    check_query(&q)?;
    let limit = p.limit.unwrap_or(8);
    if limit == 0 || limit > 20 {
        return Err(bad("limit must be between 1 and 20"));
    }
    let s = blocking(move || {
        let s = st.engine.suggest_as(&v, &q, limit)?;
        if !s.is_empty() {
            let ids: Vec<&str> = s.iter().map(|x| x.id.as_str()).collect();
            st.audit(
                &v,
                vec![AuditEntry {
                    action: "suggest".into(),
                    query: Some(q.clone()),
                    detail: Some(format!("shown: {}", ids.join(" "))),
                    ..Default::default()
                }],
            )?;
        }
        Ok(s)
    })
    .await?;
    Ok(Json(Suggestions { suggestions: s }))
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(bad("not a customer id: ids are letters, digits, `-` and `_`, as search results give them"));
    }
    Ok(())
}

async fn customer(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_id(&id)?;
    let shown = id.clone();
    let d = blocking(move || {
        let d = st.engine.customer_as(&v, &id)?;
        if let Some(d) = &d {
            st.audit(
                &v,
                vec![AuditEntry {
                    action: "dossier".into(),
                    customer: d.id.clone(),
                    detail: (d.id.as_deref() != Some(id.as_str())).then(|| format!("asked for {id}")),
                    ..Default::default()
                }],
            )?;
        }
        Ok(d)
    })
    .await?;
    d.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no customer {shown}")))
}

/// Why a record key cannot be one: too long, control characters, or `..` path segments
/// (keys are looked up, never opened, but a traversal attempt is refused as such).
fn check_key(key: &str) -> Result<(), ApiError> {
    if key.len() > 2048 {
        return Err(bad("record key too long"));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("a record key holds no control characters"));
    }
    if key.split(['/', '\\', ':']).any(|seg| seg == "..") {
        return Err(bad("a record key has no `..` segments"));
    }
    Ok(())
}

async fn record(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    Path(key): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    check_key(&key)?;
    let shown = key.clone();
    let r = blocking(move || {
        let r = st.engine.record_as(&v, &key)?;
        if r.is_some() {
            st.audit(&v, vec![AuditEntry { action: "record".into(), record: Some(key), ..Default::default() }])?;
        }
        Ok(r)
    })
    .await?;
    r.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no record {shown}")))
}

fn admin_only(v: &Viewer) -> Result<(), ApiError> {
    if v.admin {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("role `{}` may not use this route; it is for administrators", v.role),
        ))
    }
}

async fn runs(State(st): State<Arc<AppState>>, Extension(v): Extension<Viewer>) -> Result<impl IntoResponse, ApiError> {
    admin_only(&v)?;
    let r = blocking(move || Ok(st.engine.with_state(|s| s.runs(20, 100))?.map_err(QueryError::from)?)).await?;
    Ok(Json(r))
}

/// `GET /api/admin/audit` parameters.
#[derive(Deserialize)]
pub struct AuditParams {
    who: Option<String>,
    customer: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

async fn audit(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    p: Result<Query<AuditParams>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin_only(&v)?;
    let Query(p) = p.map_err(bad_query)?;
    let limit = p.limit.unwrap_or(100);
    if limit == 0 || limit > 10_000 {
        return Err(bad("limit must be between 1 and 10000"));
    }
    let f = AuditFilter { who: p.who, customer: p.customer, action: p.action, since: p.since, until: p.until, limit };
    let r = blocking(move || Ok(st.engine.with_state(|s| s.audit_entries(&f))?.map_err(QueryError::from)?)).await?;
    Ok(Json(r))
}

/// `GET /metrics`: OpenMetrics text for Prometheus (administrators' keys: set the scrape job's
/// `authorization` credentials to one).
async fn metrics(State(st): State<Arc<AppState>>, Extension(v): Extension<Viewer>) -> Result<Response, ApiError> {
    admin_only(&v)?;
    let text = blocking(move || {
        let mut snap = st
            .engine
            .with_state(|s| -> Result<_, crate::state::StateError> {
                Ok(crate::metrics::IndexSnapshot {
                    runs: s.run_counts()?,
                    last: s.last_finished_run()?.map(|(r, at)| {
                        let secs = chrono::DateTime::parse_from_rfc3339(&at)
                            .map_or(0.0, |t| t.timestamp_millis() as f64 / 1e3);
                        (r, secs)
                    }),
                    customers: s.customer_count()?,
                    index_bytes: 0,
                })
            })?
            .map_err(QueryError::from)?;
        snap.index_bytes = crate::metrics::folder_bytes(&st.index_dir);
        st.metrics.render(&snap).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response())
}

/// Counts and times every request by its route's pattern.
async fn track(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let t = std::time::Instant::now();
    let res = next.run(req).await;
    st.metrics.observe(&route, res.status().as_u16(), t.elapsed().as_secs_f64());
    res
}

/// `POST /api/admin/runs` body: which source to index (every source when absent).
#[derive(Deserialize, Serialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The source's name.
    #[serde(default)]
    pub source: Option<String>,
    /// Re-extract every item, as `dossier index --full`.
    #[serde(default)]
    pub full: bool,
}

/// `POST /api/admin/runs` answer.
#[derive(Serialize, schemars::JsonSchema)]
pub struct RunQueued {
    /// True when the run was queued; false when one for the same source was already waiting.
    pub queued: bool,
    /// The source (absent: every source).
    pub source: Option<String>,
}

async fn start_run(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    body: Result<Json<RunRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<RunQueued>), ApiError> {
    admin_only(&v)?;
    let Json(req) = body.map_err(|e| ApiError(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    let Some(runs) = st.runs.clone() else {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "this server does not run index passes".into()));
    };
    if let Some(s) = &req.source
        && !st.sources.contains(s)
    {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no source named `{s}` in the config")));
    }
    let queued = runs.request(req.source.clone(), req.full);
    let detail = format!("source {}, full {}", req.source.as_deref().unwrap_or("*"), req.full);
    blocking(move || {
        st.audit(&v, vec![AuditEntry { action: "run".into(), detail: Some(detail), ..Default::default() }])
    })
    .await?;
    Ok((StatusCode::ACCEPTED, Json(RunQueued { queued, source: req.source })))
}

/// `POST /api/admin/export-subject` body.
#[derive(Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// The customer id (an old id of a merged customer is followed).
    pub customer: String,
}

async fn export_subject(
    State(st): State<Arc<AppState>>,
    Extension(v): Extension<Viewer>,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    admin_only(&v)?;
    // The rejection's own status: 400 bad JSON, 413 too large, 415 not JSON, 422 wrong shape.
    let Json(req) = body.map_err(|e| ApiError(e.status(), format!("bad JSON body: {}", e.body_text())))?;
    check_id(&req.customer)?;
    let shown = req.customer.clone();
    let x = blocking(move || {
        let x = st.engine.export_subject(&req.customer)?;
        if let Some(x) = &x {
            st.audit(
                &v,
                vec![AuditEntry {
                    action: "export-subject".into(),
                    customer: Some(x.customer.clone()),
                    detail: Some(format!("{} records", x.records.len())),
                    ..Default::default()
                }],
            )?;
        }
        Ok(x)
    })
    .await?;
    x.map(Json).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no customer {shown}")))
}

/// `GET /api/whoami`: the caller's role and what it sees.
#[derive(Serialize, schemars::JsonSchema)]
pub struct WhoAmI {
    /// The key's name.
    pub who: String,
    /// The role.
    pub role: String,
    /// Sources visible (absent: all).
    pub sources: Option<Vec<String>>,
    /// Sensitive values shown unmasked.
    pub unmask: bool,
    /// Administrator.
    pub admin: bool,
}

async fn whoami(Extension(v): Extension<Viewer>) -> impl IntoResponse {
    Json(WhoAmI {
        who: v.who,
        role: v.role,
        sources: v.sources.map(|s| s.into_iter().collect()),
        unmask: v.unmask,
        admin: v.admin,
    })
}

async fn health() -> impl IntoResponse {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

async fn page() -> impl IntoResponse {
    // The page holds no data (it asks for a key, then calls the API), so it needs none.
    Html(include_str!("web/index.html"))
}

async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such route; the API is described at /api/openapi.json".into())
}

/// Lets a request through with the viewer its bearer key makes, or answers 401.
async fn authenticate(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let key = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|k| k.trim().to_string());
    let Some(key) = key else {
        return ApiError(
            StatusCode::UNAUTHORIZED,
            "send an API key as `Authorization: Bearer KEY` (an administrator creates one with `dossier keys add`)"
                .into(),
        )
        .into_response();
    };
    let st2 = st.clone();
    match blocking(move || st2.auth.viewer(&st2.engine, &key)).await {
        Ok(v) => {
            req.extensions_mut().insert(v);
            next.run(req).await
        }
        Err(e) => {
            tracing::warn!(path = %req.uri().path(), "refused a request: {}", e.1);
            e.into_response()
        }
    }
}

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/search", get(search))
        .route("/api/suggest", get(suggest))
        .route("/api/customers/{id}", get(customer))
        .route("/api/records/{*key}", get(record))
        .route("/api/runs", get(runs))
        .route("/api/admin/runs", post(start_run))
        .route("/metrics", get(metrics))
        .route("/api/whoami", get(whoami))
        .route("/api/admin/audit", get(audit))
        .route("/api/admin/export-subject", post(export_subject))
        .fallback(not_found)
        // `layer`, not `route_layer`: unknown routes need a key too, so they tell nothing.
        .layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/", get(page))
        .route("/api/health", get(health))
        .merge(api)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .with_state(state)
}

/// How often the server looks for a newer index commit.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Serves until Ctrl-C: each connection must send its request headers within 10 s (axum's own
/// `serve` sets no such limit, so slow clients could hold connections open for ever), at most
/// 1024 connections at once. Index runs by other processes show within two seconds.
pub async fn serve(state: AppState, listen: &str) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let state = Arc::new(state);
    let watched = state.clone();
    let finished = state.runs.as_ref().map(|r| r.finished());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        loop {
            // Every few seconds for runs of other processes; at once after a run of this one.
            match &finished {
                Some(f) => tokio::select! {
                    _ = tick.tick() => {}
                    _ = f.notified() => {}
                },
                None => {
                    tick.tick().await;
                }
            }
            let st = watched.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || st.engine.reload()).await {
                tracing::warn!("reloading the index: {e}");
            }
        }
    });
    let app = router(state);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        crate::tell(format_args!(
            "note: listening on {addr}, reachable from other machines; every route but /api/health needs a key"
        ));
    }
    crate::tell(format_args!("dossier is serving http://{addr}/  (Ctrl-C stops it)"));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut stop = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = &mut stop => break,
        };
        let (stream, _) = tokio::select! {
            c = listener.accept() => match c {
                Ok(c) => c,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let svc = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    // Requests under way get a few seconds to finish.
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_with_traversal_or_control_characters_are_refused() {
        assert!(check_key("contracts:contract-1.pdf#p2").is_ok());
        assert!(check_key("contracts:a..b.pdf").is_ok());
        for k in ["contracts:../../etc/passwd", "crm:x/../y", "a\\..\\b", "x\u{0}y"] {
            assert!(check_key(k).is_err(), "{k}");
        }
        assert!(check_id("c-0123abcd").is_ok());
        assert!(check_id("../x").is_err());
    }
}

//! The HTTP server (`labelscope serve`): task pages, their JSON API, image
//! serving and the per-worker statistics page.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/hit/{token}` | the task page (asks for a worker id unless `?worker=` is given) |
//! | POST | `/api/hit/{token}/start` | `{"worker": id}` → the assignment and its key, pages already submitted |
//! | GET | `/api/hit/{token}/page/{i}?assignment=&key=` | page `i`: class, images, autosaved draft |
//! | POST | `/api/hit/{token}/page/{i}` | submit page `i` (one transaction); `{"status": "saved" \| "already_saved"}` |
//! | PUT | `/api/hit/{token}/draft/{i}` | autosave partial work of page `i` |
//! | GET | `/api/hit/{token}/suggest/{i}?assignment=&key=&q=&x0=&y0=&x1=&y1=` | region task: ranked classes for a box (model) or a query (class-name search); label task: class-name search only |
//! | GET | `/img/{token}/{image id}` | an image of the HIT (only images of its pages) |
//! | GET | `/admin/workers?key=&project=` | per-worker statistics (the admin key is printed at start) |
//!
//! All user text reaches pages HTML-escaped (JSON embedded in a page is
//! escaped so that it cannot close its `<script>` element); request bodies
//! are limited in size; errors are JSON `{"error": message}` with a 4xx
//! status for anything the client did wrong.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::browse::{validate_page, PageContext, ValidRecord};
use crate::db::{Db, HitRow, RecordRow, SaveOutcome};
use crate::label::{validate_label, LabelContext};
use crate::manifest::{HitSpec, ImageExtra, Task};
use crate::region::{search_classes, validate_region, RegionContext, Suggestion};
use crate::secret::{is_token, token_hash, WorkerKey};
use crate::tag::{validate_tag, TagContext};
use crate::verify::{validate_verify, VerifyContext};
use crate::Result;

/// Ranked classes for a box of an image: the model behind the Region task's
/// suggestions (the CLI implements it with the relabel region query).
pub trait RegionSuggester: Send + Sync {
    /// The `k` most probable classes `(class key, probability)` of the box
    /// `[x0, y0, x1, y1]` (normalised to the image) of the image called
    /// `name`, stored at `file`; most probable first. Errors are messages
    /// for the annotator's page.
    fn suggest(
        &self,
        name: &str,
        file: &std::path::Path,
        bbox: [f64; 4],
        k: usize,
    ) -> std::result::Result<Vec<(String, f64)>, String>;

    /// Whether `key` is one of the model's classes (a region may be labelled
    /// with any class the model can suggest).
    fn knows(&self, key: &str) -> bool;

    /// The display name of one of the model's classes.
    fn class_name(&self, key: &str) -> Option<String>;
}

/// Settings of a server.
#[derive(Clone)]
pub struct ServerConfig {
    /// The image folder (files are served only through the database's
    /// image table, never by a path from the request).
    pub images: PathBuf,
    /// Largest accepted request body in bytes.
    pub max_body: usize,
    /// The model behind Region suggestions; class-name search when `None`.
    pub suggester: Option<Arc<dyn RegionSuggester>>,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("images", &self.images)
            .field("max_body", &self.max_body)
            .field("suggester", &self.suggester.is_some())
            .finish()
    }
}

/// A server error: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg.into())
    }

    fn not_found(what: &str) -> ApiError {
        ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        match e {
            crate::Error::Invalid(m) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, m),
            other => ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.0.is_server_error() {
            eprintln!("error: {}", self.1);
        }
        (self.0, axum::Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

struct AppState {
    db: Db,
    key: WorkerKey,
    admin_key: String,
    images: PathBuf,
    suggester: Option<Arc<dyn RegionSuggester>>,
}

type Shared = Arc<AppState>;

/// The admin key derived from the worker key (stable across restarts).
pub fn admin_key(key: &WorkerKey) -> String {
    key.hash_worker("labelscope-admin\u{0}")
}

fn assignment_key(key: &WorkerKey, assignment: i64) -> String {
    key.hash_worker(&format!("labelscope-assignment\u{0}{assignment}"))
}

/// The router of a studio server over `db`.
pub fn router(db: Db, key: WorkerKey, config: &ServerConfig) -> Result<Router> {
    let images = config.images.canonicalize().map_err(|e| crate::Error::io(&config.images, e))?;
    let state = Arc::new(AppState { db, admin_key: admin_key(&key), key, images, suggester: config.suggester.clone() });
    Ok(Router::new()
        .route("/", get(index))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/static/{file}", get(asset))
        .route("/hit/{token}", get(hit_page))
        .route("/api/hit/{token}/start", post(start))
        .route("/api/hit/{token}/page/{index}", get(page).post(submit))
        .route("/api/hit/{token}/draft/{index}", put(draft))
        .route("/api/hit/{token}/suggest/{index}", get(suggest))
        .route("/img/{token}/{image}", get(image))
        .route("/admin/workers", get(workers))
        .fallback(|| async { ApiError::not_found("page") })
        .layer(DefaultBodyLimit::max(config.max_body))
        .with_state(state))
}

/// Serves `router` on `addr` until Ctrl-C; calls `ready` with the bound
/// address once listening.
pub async fn serve(router: Router, addr: SocketAddr, ready: impl FnOnce(SocketAddr)) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| crate::Error::Invalid(format!("cannot listen on {addr}: {e}")))?;
    ready(bound);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| crate::Error::Invalid(format!("server stopped: {e}")))
}

/// Escapes text for HTML element content and attribute values (control
/// characters become U+FFFD).
pub fn escape_html(s: &str) -> String {
    labelscope_report::escape_xml(s)
}

/// JSON that is safe inside a `<script type="application/json">` element:
/// `<`, `>` and `&` become `\u003c`, `\u003e`, `\u0026`.
pub fn script_json(v: &Value) -> String {
    v.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026")
}

const STUDIO_CSS: &str = include_str!("../assets/studio.css");
const COMMON_JS: &str = include_str!("../assets/common.js");
const BROWSE_JS: &str = include_str!("../assets/browse.js");
const TAG_JS: &str = include_str!("../assets/tag.js");
const VERIFY_JS: &str = include_str!("../assets/verify.js");
const REGION_JS: &str = include_str!("../assets/region.js");
const LABEL_JS: &str = include_str!("../assets/label.js");

async fn asset(UrlPath(file): UrlPath<String>) -> Response {
    let js = "text/javascript; charset=utf-8";
    let (body, kind) = match file.as_str() {
        "studio.css" => (STUDIO_CSS, "text/css; charset=utf-8"),
        "common.js" => (COMMON_JS, js),
        "browse.js" => (BROWSE_JS, js),
        "tag.js" => (TAG_JS, js),
        "verify.js" => (VERIFY_JS, js),
        "region.js" => (REGION_JS, js),
        "label.js" => (LABEL_JS, js),
        _ => return ApiError::not_found("file").into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn index() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>labelscope studio</title>\
         <link rel=\"stylesheet\" href=\"/static/studio.css\"></head><body><main><h1>labelscope studio</h1>\
         <p>Open the link of your task to start.</p></main></body></html>",
    )
}

async fn hit_of(state: &AppState, token: &str) -> ApiResult<(crate::db::HitRow, HitSpec)> {
    if !is_token(token) {
        return Err(ApiError::not_found("HIT"));
    }
    let hit = state.db.hit_by_token_hash(&token_hash(token)).await?.ok_or_else(|| ApiError::not_found("HIT"))?;
    let spec: HitSpec = serde_json::from_str(&hit.spec).map_err(|e| {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("stored HIT {} is unreadable: {e}", hit.id))
    })?;
    Ok((hit, spec))
}

#[derive(Deserialize)]
struct WorkerQuery {
    worker: Option<String>,
}

async fn hit_page(
    State(state): State<Shared>,
    UrlPath(token): UrlPath<String>,
    Query(q): Query<WorkerQuery>,
) -> ApiResult<Response> {
    let (hit, spec) = hit_of(&state, &token).await?;
    let class = spec.pages.first().and_then(|p| spec.classes.iter().find(|c| c.wnid == p.class));
    let data = json!({
        "token": token,
        "task": spec.task.name(),
        "project": hit.project,
        "hit": hit.ordinal,
        "pages": spec.pages.len(),
        "pointer_nudge": spec.pointer_nudge,
        "categories": spec.categories,
        "model": state.suggester.is_some(),
        "worker": q.worker,
    });
    let title = match spec.task {
        Task::Browse => class.map(|c| c.name.as_str()).unwrap_or("annotation"),
        Task::Tag => "tag the objects",
        Task::Verify => "verify labels",
        Task::Region => "label regions",
        Task::Label => "label the image",
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} — labelscope studio</title><link rel=\"stylesheet\" href=\"/static/studio.css\"></head>\
         <body><main id=\"app\" data-task=\"{task}\"><p class=\"loading\">Loading…</p></main>\
         <script id=\"hit-data\" type=\"application/json\">{data}</script>\
         <script src=\"/static/common.js\"></script><script src=\"/static/{task}.js\"></script></body></html>",
        title = escape_html(title),
        task = escape_html(spec.task.name()),
        data = script_json(&data),
    );
    let mut resp = Html(body).into_response();
    // No inline script may run: the only script is our own file.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"),
    );
    Ok(resp)
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("request body: line {}, column {}: not valid JSON: {e}", e.line(), e.column()),
        )
    })
}

async fn start(State(state): State<Shared>, UrlPath(token): UrlPath<String>, body: Bytes) -> ApiResult<Response> {
    let (hit, _) = hit_of(&state, &token).await?;
    let v = parse_json(&body)?;
    let worker = match v.get("worker") {
        Some(Value::String(w)) if !w.trim().is_empty() && w.len() <= 200 => w.trim().to_string(),
        _ => return Err(ApiError::bad("worker: expected a non-empty string of at most 200 bytes")),
    };
    let worker_hash = state.key.hash_worker(&worker);
    let assignment = state.db.assignment(hit.id, &worker_hash).await?;
    let submitted = state.db.submitted_pages(assignment).await?;
    Ok(axum::Json(json!({
        "assignment": assignment,
        "key": assignment_key(&state.key, assignment),
        "submitted": submitted,
    }))
    .into_response())
}

/// Checks that `assignment` belongs to `hit_id` and `key` is its key.
async fn check_assignment(state: &AppState, hit_id: i64, assignment: i64, key: &str) -> ApiResult<String> {
    let (owner_hit, worker) =
        state.db.assignment_owner(assignment).await?.ok_or_else(|| ApiError::not_found("assignment"))?;
    if owner_hit != hit_id || key != assignment_key(&state.key, assignment) {
        return Err(ApiError(StatusCode::FORBIDDEN, "assignment: not an assignment of this HIT, or wrong key".into()));
    }
    Ok(worker)
}

#[derive(Deserialize)]
struct AssignmentQuery {
    assignment: i64,
    key: String,
}

async fn page(
    State(state): State<Shared>,
    UrlPath((token, index)): UrlPath<(String, usize)>,
    Query(q): Query<AssignmentQuery>,
) -> ApiResult<Response> {
    let (hit, spec) = hit_of(&state, &token).await?;
    check_assignment(&state, hit.id, q.assignment, &q.key).await?;
    let p = spec.pages.get(index).ok_or_else(|| ApiError::not_found("page"))?;
    let class = spec.classes.iter().find(|c| c.wnid == p.class);
    let rows = state.db.images(hit.project_id, &p.images).await?;
    let images: Vec<Value> =
        rows.iter().map(|r| json!({ "id": r.id, "url": format!("/img/{token}/{}", r.id) })).collect();
    // Verify pages list the labels to answer (gold answers stay on the server).
    let proposed: Vec<Value> = if spec.task == Task::Verify {
        let extra = ImageExtra::from_stored(rows.first().and_then(|r| r.extra.as_deref()));
        extra
            .proposed
            .iter()
            .map(|l| match spec.classes.iter().find(|c| &c.wnid == l) {
                Some(c) => json!({"wnid": c.wnid, "name": c.name, "description": c.description}),
                None => json!({"wnid": l, "name": l, "description": ""}),
            })
            .collect()
    } else {
        Vec::new()
    };
    let draft = match state.db.draft(q.assignment, index as i64).await? {
        Some(d) => serde_json::from_str::<Value>(&d).unwrap_or(Value::Null),
        None => Value::Null,
    };
    let submitted = state.db.submitted_pages(q.assignment).await?.contains(&(index as i64));
    Ok(axum::Json(json!({
        "index": index,
        "pages": spec.pages.len(),
        "class": class.map(|c| json!({"wnid": c.wnid, "name": c.name, "description": c.description})),
        "images": images,
        "proposed": proposed,
        "draft": draft,
        "submitted": submitted,
    }))
    .into_response())
}

fn assignment_fields(v: &Value) -> ApiResult<(i64, String)> {
    let assignment = v
        .get("assignment")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad("assignment: expected the integer returned by /start"))?;
    let key = v
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad("key: expected the string returned by /start"))?
        .to_string();
    Ok((assignment, key))
}

/// The HIT of `token` and a JSON body that carries one of its assignments
/// with the right key: `(hit, spec, body, assignment)`.
async fn authorised(state: &AppState, token: &str, body: &Bytes) -> ApiResult<(HitRow, HitSpec, Value, i64)> {
    let (hit, spec) = hit_of(state, token).await?;
    let v = parse_json(body)?;
    let (assignment, key) = assignment_fields(&v)?;
    check_assignment(state, hit.id, assignment, &key).await?;
    Ok((hit, spec, v, assignment))
}

/// Whether `key` may label a region of a HIT: a class of the HIT, an
/// ImageNet WordNet id, or a class of the region model.
fn is_class(state: &AppState, spec: &HitSpec, key: &str) -> bool {
    spec.classes.iter().any(|c| c.wnid == key)
        || labelscope_core::classes::ClassTable::imagenet().index_of_wnid(key).is_some()
        || state.suggester.as_ref().is_some_and(|m| m.knows(key))
}

/// Validates a page submission of any task: its records.
async fn validate(
    state: &AppState,
    hit: &HitRow,
    spec: &HitSpec,
    index: usize,
    v: &Value,
) -> ApiResult<Vec<ValidRecord>> {
    let p = spec.pages.get(index).ok_or_else(|| ApiError::not_found("page"))?;
    let image = || p.images.first().copied().ok_or_else(|| ApiError::not_found("image"));
    Ok(match spec.task {
        Task::Browse => {
            let expected: HashSet<i64> = p.images.iter().copied().collect();
            validate_page(v, &PageContext { expected: &expected }).map_err(ApiError::bad)?
        }
        Task::Tag => {
            vec![validate_tag(v, &TagContext { image: image()?, categories: &spec.categories })
                .map_err(ApiError::bad)?]
        }
        Task::Verify => {
            let id = image()?;
            let row =
                state.db.images(hit.project_id, &[id]).await?.pop().ok_or_else(|| ApiError::not_found("image"))?;
            let extra = ImageExtra::from_stored(row.extra.as_deref());
            vec![validate_verify(v, &VerifyContext { image: id, proposed: &extra.proposed }).map_err(ApiError::bad)?]
        }
        Task::Region => {
            let check = |k: &str| is_class(state, spec, k);
            vec![validate_region(v, &RegionContext { image: image()?, is_class: &check }).map_err(ApiError::bad)?]
        }
        Task::Label => {
            // The choices: the project's listed classes and the ImageNet table (no model classes).
            let table = labelscope_core::classes::ClassTable::imagenet();
            let check = |k: &str| spec.classes.iter().any(|c| c.wnid == k) || table.index_of_wnid(k).is_some();
            vec![validate_label(v, &LabelContext { image: image()?, is_class: &check }).map_err(ApiError::bad)?]
        }
    })
}

async fn submit(
    State(state): State<Shared>,
    UrlPath((token, index)): UrlPath<(String, usize)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (hit, spec, v, assignment) = authorised(&state, &token, &body).await?;
    let records = validate(&state, &hit, &spec, index, &v).await?;
    let rows: Vec<RecordRow> = records
        .into_iter()
        .map(|r| RecordRow { image_id: r.image_id, selected: r.selected, data: r.data.to_string() })
        .collect();
    let outcome = state.db.save_page(assignment, index as i64, &v.to_string(), &rows).await?;
    let status = match outcome {
        SaveOutcome::Saved => "saved",
        SaveOutcome::AlreadySaved => "already_saved",
    };
    Ok(axum::Json(json!({ "status": status, "page": index })).into_response())
}

async fn draft(
    State(state): State<Shared>,
    UrlPath((token, index)): UrlPath<(String, usize)>,
    body: Bytes,
) -> ApiResult<Response> {
    let (_, spec, v, assignment) = authorised(&state, &token, &body).await?;
    if index >= spec.pages.len() {
        return Err(ApiError::not_found("page"));
    }
    let d = v.get("draft").ok_or_else(|| ApiError::bad("draft: expected the page's partial work"))?;
    state.db.save_draft(assignment, index as i64, &d.to_string()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct SuggestQuery {
    assignment: i64,
    key: String,
    q: Option<String>,
    x0: Option<f64>,
    y0: Option<f64>,
    x1: Option<f64>,
    y1: Option<f64>,
}

/// Suggestions shown per request.
const SUGGESTIONS: usize = 10;

async fn suggest(
    State(state): State<Shared>,
    UrlPath((token, index)): UrlPath<(String, usize)>,
    Query(q): Query<SuggestQuery>,
) -> ApiResult<Response> {
    let (hit, spec) = hit_of(&state, &token).await?;
    check_assignment(&state, hit.id, q.assignment, &q.key).await?;
    if !matches!(spec.task, Task::Region | Task::Label) {
        return Err(ApiError::not_found("suggestions"));
    }
    let p = spec.pages.get(index).ok_or_else(|| ApiError::not_found("page"))?;
    let query = q.q.unwrap_or_default();
    if query.len() > 200 {
        return Err(ApiError::bad("q: at most 200 bytes"));
    }
    let names = |list: Vec<(String, f64)>| -> Vec<Suggestion> {
        let table = labelscope_core::classes::ClassTable::imagenet();
        list.into_iter()
            .map(|(wnid, score)| {
                let name = spec
                    .classes
                    .iter()
                    .find(|c| c.wnid == wnid)
                    .map(|c| c.name.clone())
                    .or_else(|| state.suggester.as_ref().and_then(|m| m.class_name(&wnid)))
                    .or_else(|| table.index_of_wnid(&wnid).and_then(|k| table.get(k)).map(|c| c.name().to_string()))
                    .unwrap_or_else(|| wnid.clone());
                Suggestion { wnid, name, score }
            })
            .collect()
    };
    let bbox = match (q.x0, q.y0, q.x1, q.y1) {
        (Some(x0), Some(y0), Some(x1), Some(y1)) => {
            let b = [x0, y0, x1, y1];
            if !b.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) || x0 >= x1 || y0 >= y1 {
                return Err(ApiError::bad("x0, y0, x1, y1: expected a non-empty box inside [0, 1]"));
            }
            Some(b)
        }
        (None, None, None, None) => None,
        _ => return Err(ApiError::bad("x0, y0, x1, y1: give all four or none")),
    };
    // Label pages search class names only: the region model answers boxes.
    let model = if spec.task == Task::Region { state.suggester.as_ref() } else { None };
    let (source, list) = match (model, bbox, query.trim().is_empty()) {
        (Some(model), Some(b), true) => {
            let id = p.images.first().copied().ok_or_else(|| ApiError::not_found("image"))?;
            let row =
                state.db.images(hit.project_id, &[id]).await?.pop().ok_or_else(|| ApiError::not_found("image"))?;
            let file = state.images.join(&row.file);
            let model = model.clone();
            let found = tokio::task::spawn_blocking(move || model.suggest(&row.name, &file, b, SUGGESTIONS))
                .await
                .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("region query failed: {e}")))?
                .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("region query: {e}")))?;
            ("model", names(found))
        }
        _ => {
            let extra: Vec<(String, String)> = spec.classes.iter().map(|c| (c.wnid.clone(), c.name.clone())).collect();
            ("search", search_classes(&query, &extra, SUGGESTIONS))
        }
    };
    let list: Vec<Value> =
        list.into_iter().map(|s| json!({"wnid": s.wnid, "name": s.name, "score": s.score})).collect();
    Ok(axum::Json(json!({"source": source, "model": model.is_some(), "suggestions": list})).into_response())
}

fn content_type(file: &str) -> &'static str {
    let lower = file.to_ascii_lowercase();
    match lower.rsplit('.').next() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "application/octet-stream",
    }
}

async fn image(State(state): State<Shared>, UrlPath((token, image)): UrlPath<(String, i64)>) -> ApiResult<Response> {
    let (hit, spec) = hit_of(&state, &token).await?;
    if !spec.pages.iter().any(|p| p.images.contains(&image)) {
        return Err(ApiError::not_found("image"));
    }
    let row = state.db.images(hit.project_id, &[image]).await?.pop().ok_or_else(|| ApiError::not_found("image"))?;
    let full = state.images.join(&row.file);
    // The stored path is relative and was checked at creation; check again
    // against links that point out of the folder since.
    let real = tokio::fs::canonicalize(&full).await.map_err(|_| ApiError::not_found("image"))?;
    if !real.starts_with(&state.images) {
        return Err(ApiError::not_found("image"));
    }
    let bytes = tokio::fs::read(&real).await.map_err(|_| ApiError::not_found("image"))?;
    Ok(([(header::CONTENT_TYPE, content_type(&row.file)), (header::CACHE_CONTROL, "private, max-age=3600")], bytes)
        .into_response())
}

#[derive(Deserialize)]
struct AdminQuery {
    key: String,
    project: Option<String>,
}

async fn workers(State(state): State<Shared>, Query(q): Query<AdminQuery>) -> ApiResult<Response> {
    if q.key != state.admin_key {
        return Err(ApiError(StatusCode::FORBIDDEN, "admin: wrong key".into()));
    }
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>workers — labelscope studio</title>\
         <link rel=\"stylesheet\" href=\"/static/studio.css\"></head><body><main><h1>Workers</h1>",
    );
    for (pid, name, task, hits) in state.db.projects().await? {
        if q.project.as_deref().is_some_and(|p| p != name) {
            continue;
        }
        html.push_str(&format!(
            "<h2>{} <small>({} · {} HITs)</small></h2><table><thead><tr><th>worker (keyed hash)</th>\
             <th>assignments</th><th>pages</th><th>images shown</th><th>selected</th><th>selection rate</th>\
             <th>known positives shown</th><th>recall on known positives</th><th>gold accuracy</th>\
             <th>known-object accuracy</th></tr></thead><tbody>",
            escape_html(&name),
            escape_html(&task),
            hits
        ));
        // One query for the assignment totals; the worker rows and the per-worker gold and
        // known-object counts are both summed from it.
        let assignments = state.db.assignment_stats(pid).await?;
        let mut checks: std::collections::HashMap<String, crate::qc::Checks> = std::collections::HashMap::new();
        if let Some(t) = Task::parse(&task) {
            let per_assignment = crate::qc::assignment_checks(t, &state.db.export_rows(pid).await?)?;
            for a in &assignments {
                if let Some(c) = per_assignment.get(&a.assignment) {
                    let w = checks.entry(a.worker.clone()).or_default();
                    w.gold.0 += c.gold.0;
                    w.gold.1 += c.gold.1;
                    w.objects.0 += c.objects.0;
                    w.objects.1 += c.objects.1;
                }
            }
        }
        let share = |(right, total): (i64, i64)| {
            if total > 0 {
                format!("{:.3} ({right} of {total})", right as f64 / total as f64)
            } else {
                "–".to_string()
            }
        };
        for w in crate::db::sum_by_worker(&assignments) {
            let c = checks.get(&w.worker).copied().unwrap_or_default();
            let rate = if w.shown > 0 { format!("{:.3}", w.selected as f64 / w.shown as f64) } else { "–".into() };
            let recall = if w.known_shown > 0 {
                format!("{:.3}", w.known_selected as f64 / w.known_shown as f64)
            } else {
                "–".into()
            };
            html.push_str(&format!(
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{rate}</td><td>{}</td>\
                 <td>{recall}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&w.worker),
                w.assignments,
                w.pages,
                w.shown,
                w.selected,
                w.known_shown,
                share(c.gold),
                share(c.objects)
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</main></body></html>");
    Ok(Html(html).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="a('b')">&"#),
            "&lt;img src=x onerror=&quot;a(&#39;b&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn script_json_cannot_close_the_script() {
        let v = json!({"w": "</script><script>alert(1)</script>&"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'), "{s}");
        let back: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back, v);
    }
}

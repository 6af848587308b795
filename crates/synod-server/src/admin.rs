//! synod's HTTP admin API: a node's status, membership changes, Prometheus metrics, the
//! supervision tree, the dashboard's rolling window, and the dashboard page itself.
//!
//! The router asks the node for everything through an [`AdminBackend`], so it can be served
//! against a real node or a fake one in tests:
//!
//! | route              | answer                                                        |
//! |--------------------|---------------------------------------------------------------|
//! | `GET /status`      | the node's [`NodeStatus`] as JSON                             |
//! | `GET /members`     | voters, learners and every member's endpoints as JSON         |
//! | `POST /members`    | a [`MembersRequest`] as JSON; 200, 400 (bad JSON) or 503      |
//! | `GET /metrics`     | Prometheus text (`text/plain; version=0.0.4`)                 |
//! | `GET /supervision` | the actor tree as JSON rows, or `?format=text` as a tree      |
//! | `GET /stats`       | the last 120 s of throughput and latency as JSON              |
//! | `GET /`, `/dashboard` | the live dashboard page                                    |
//!
//! Every answer carries `Access-Control-Allow-Origin: *`, so the dashboard served by one
//! node can poll the others. Errors are JSON objects `{"error": "..."}`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::metrics::{ActorRow, Metrics, NodeFigures, SecondStats, supervision_text};
use crate::status::{MemberEndpoints, NodeStatus};

/// The dashboard page, served by `GET /` and `GET /dashboard`.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// Content type of `GET /metrics`.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A membership change asked for by `POST /members`, as JSON:
/// `{"action":"add_learner","node":4}`, `{"action":"promote","node":4}`,
/// `{"action":"remove","node":4}`, `{"action":"transfer_leader","to":2}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum MembersRequest {
    /// Add a node as a learner: it receives the log but does not vote.
    AddLearner { node: u64 },
    /// Make a learner a voter.
    Promote { node: u64 },
    /// Remove a voter or learner.
    Remove { node: u64 },
    /// Ask the leader to hand leadership to a voter.
    TransferLeader { to: u64 },
}

/// What the admin API asks of the node. Each method answers with the error text the client
/// should see when the node cannot answer (not running, not leader, timed out).
pub trait AdminBackend: Send + Sync + 'static {
    fn status(&self) -> impl Future<Output = Result<NodeStatus, String>> + Send;

    fn figures(&self) -> impl Future<Output = Result<NodeFigures, String>> + Send;

    /// The actor tree, rows in tree order (a parent before its children).
    fn supervision(&self) -> impl Future<Output = Result<Vec<ActorRow>, String>> + Send;

    /// Carries out a membership change; answers with a message for the operator.
    fn change_members(
        &self,
        request: MembersRequest,
    ) -> impl Future<Output = Result<String, String>> + Send;

    /// The clock faults in force on this node; `Err` when it does not allow them.
    fn clock_faults(&self) -> impl Future<Output = Result<ClockFaults, String>> + Send {
        async { Err(CLOCK_FAULTS_DISABLED.to_string()) }
    }

    /// Sets this node's clock faults; `Err` when it does not allow them or the values are
    /// out of range.
    fn set_clock_faults(
        &self,
        faults: ClockFaults,
    ) -> impl Future<Output = Result<ClockFaults, String>> + Send {
        let _ = faults;
        async { Err(CLOCK_FAULTS_DISABLED.to_string()) }
    }

    /// The disk faults in force on this node; `Err` when it does not allow them.
    fn disk_faults(&self) -> impl Future<Output = Result<DiskFaults, String>> + Send {
        async { Err(DISK_FAULTS_DISABLED.to_string()) }
    }

    /// Sets this node's disk faults; `Err` when it does not allow them or the values are
    /// out of range.
    fn set_disk_faults(
        &self,
        faults: DiskFaults,
    ) -> impl Future<Output = Result<DiskFaults, String>> + Send {
        let _ = faults;
        async { Err(DISK_FAULTS_DISABLED.to_string()) }
    }
}

/// `GET /members`: who votes, who learns, and where every member serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembersView {
    /// The node answering.
    pub node: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub members: Vec<MemberEndpoints>,
}

/// `GET /stats`: the dashboard window of the node answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsView {
    /// Whole seconds, oldest first.
    pub seconds: Vec<SecondStats>,
}

struct AdminState<B> {
    backend: Arc<B>,
    metrics: Arc<Metrics>,
}

// Written by hand: a derive would ask for `B: Clone`, which the backend need not be.
impl<B> Clone for AdminState<B> {
    fn clone(&self) -> Self {
        AdminState {
            backend: Arc::clone(&self.backend),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// The admin API's routes, answering from `backend` and `metrics`.
pub fn router<B: AdminBackend>(backend: Arc<B>, registry: Arc<Metrics>) -> Router {
    let state = AdminState {
        backend,
        metrics: registry,
    };
    Router::new()
        .route("/", get(dashboard))
        .route("/dashboard", get(dashboard))
        .route("/status", get(status::<B>))
        .route("/members", get(members::<B>).post(change_members::<B>))
        .route("/metrics", get(metrics::<B>))
        .route("/supervision", get(supervision::<B>))
        .route("/stats", get(stats::<B>))
        .route(
            "/faults/clock",
            get(clock_faults::<B>).post(set_clock_faults::<B>),
        )
        .route(
            "/faults/disk",
            get(disk_faults::<B>).post(set_disk_faults::<B>),
        )
        .fallback(not_found)
        .with_state(state)
        .layer(axum::middleware::map_response(allow_any_origin))
}

async fn allow_any_origin(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct ErrorBody {
        error: String,
    }
    (
        status,
        axum::Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

fn unavailable(message: String) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, message)
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route; try /status, /members, /metrics, /supervision, /stats or /dashboard",
    )
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD_HTML)
}

async fn status<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    match state.backend.status().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(message) => unavailable(message),
    }
}

async fn members<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    match state.backend.status().await {
        Ok(status) => axum::Json(MembersView {
            node: status.node,
            leader: status.leader,
            term: status.term,
            voters: status.voters,
            learners: status.learners,
            members: status.members,
        })
        .into_response(),
        Err(message) => unavailable(message),
    }
}

async fn change_members<B: AdminBackend>(
    State(state): State<AdminState<B>>,
    body: Bytes,
) -> Response {
    #[derive(Serialize)]
    struct Changed {
        message: String,
    }
    let request: MembersRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "members: bad request body: {problem}; expected JSON such as \
                     {{\"action\":\"add_learner\",\"node\":4}} with action add_learner, \
                     promote, remove (with node) or transfer_leader (with to)"
                ),
            );
        }
    };
    match state.backend.change_members(request).await {
        Ok(message) => axum::Json(Changed { message }).into_response(),
        Err(message) => unavailable(message),
    }
}

/// Clock faults of a node, for fault testing: its clocks run `drift_ppm` parts per million
/// fast (or slow, negative) and its wall clock is `offset_ms` ahead (or behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockFaults {
    pub drift_ppm: i64,
    pub offset_ms: i64,
}

/// What a node without clock faults answers.
pub const CLOCK_FAULTS_DISABLED: &str = "clock faults are disabled on this node: they are \
    for fault testing only; set faults.clock = true in its config to allow them";

async fn clock_faults<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    fault_answer(state.backend.clock_faults().await)
}

async fn set_clock_faults<B: AdminBackend>(
    State(state): State<AdminState<B>>,
    body: Bytes,
) -> Response {
    match fault_body::<ClockFaults>("clock", r#"{"drift_ppm":200,"offset_ms":0}"#, &body) {
        Ok(faults) => fault_answer(state.backend.set_clock_faults(faults).await),
        Err(problem) => error(StatusCode::BAD_REQUEST, problem),
    }
}

/// A fault-injection request's body, or why it is not one (for a 400 answer).
fn fault_body<T: serde::de::DeserializeOwned>(
    kind: &str,
    example: &str,
    body: &[u8],
) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|problem| {
        format!("faults/{kind}: bad request body: {problem}; expected JSON such as {example}")
    })
}

/// The faults in force as JSON, or 403 with why the node refused.
fn fault_answer<T: Serialize>(result: Result<T, String>) -> Response {
    match result {
        Ok(faults) => axum::Json(faults).into_response(),
        Err(message) => error(StatusCode::FORBIDDEN, message),
    }
}

/// Disk faults of a node, for fault testing: every file and directory sync waits
/// `sync_delay_ms` before it runs (a slow disk; 0: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFaults {
    pub sync_delay_ms: u64,
    /// Every write, sync, truncation, removal and rename fails with an IO error.
    #[serde(default)]
    pub failing: bool,
}

/// What a node without disk faults answers.
pub const DISK_FAULTS_DISABLED: &str = "disk faults are disabled on this node: they are \
    for fault testing only; set faults.disk = true in its config to allow them";

async fn disk_faults<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    fault_answer(state.backend.disk_faults().await)
}

async fn set_disk_faults<B: AdminBackend>(
    State(state): State<AdminState<B>>,
    body: Bytes,
) -> Response {
    match fault_body::<DiskFaults>("disk", r#"{"sync_delay_ms":200}"#, &body) {
        Ok(faults) => fault_answer(state.backend.set_disk_faults(faults).await),
        Err(problem) => error(StatusCode::BAD_REQUEST, problem),
    }
}

async fn metrics<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    match state.backend.figures().await {
        Ok(figures) => {
            let text = state.metrics.encode(&figures);
            ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response()
        }
        Err(message) => unavailable(message),
    }
}

#[derive(Debug, Deserialize)]
struct SupervisionQuery {
    format: Option<String>,
}

async fn supervision<B: AdminBackend>(
    State(state): State<AdminState<B>>,
    query: Result<Query<SupervisionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let text = match query.as_ref().map(|query| query.format.as_deref()) {
        Ok(None | Some("json")) => false,
        Ok(Some("text")) => true,
        Ok(Some(other)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("supervision: unknown format '{other}'; use format=json or format=text"),
            );
        }
        Err(rejection) => {
            return error(StatusCode::BAD_REQUEST, format!("supervision: {rejection}"));
        }
    };
    match state.backend.supervision().await {
        Ok(rows) if text => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            supervision_text(&rows),
        )
            .into_response(),
        Ok(rows) => axum::Json(rows).into_response(),
        Err(message) => unavailable(message),
    }
}

async fn stats<B: AdminBackend>(State(state): State<AdminState<B>>) -> Response {
    axum::Json(StatsView {
        seconds: state.metrics.recent(),
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_requests_parse_from_json() {
        // Checks each membership action's JSON form, and that unknown actions, missing
        // fields and stray fields are refused.
        let table: [(&str, Option<MembersRequest>); 8] = [
            (
                r#"{"action":"add_learner","node":4}"#,
                Some(MembersRequest::AddLearner { node: 4 }),
            ),
            (
                r#"{"action":"promote","node":4}"#,
                Some(MembersRequest::Promote { node: 4 }),
            ),
            (
                r#"{"action":"remove","node":2}"#,
                Some(MembersRequest::Remove { node: 2 }),
            ),
            (
                r#"{"action":"transfer_leader","to":3}"#,
                Some(MembersRequest::TransferLeader { to: 3 }),
            ),
            (r#"{"action":"explode","node":4}"#, None),
            (r#"{"action":"promote"}"#, None),
            (r#"{"action":"promote","node":4,"force":true}"#, None),
            (r#"{"action":"promote","node":-1}"#, None),
        ];
        for (json, expected) in table {
            let parsed = serde_json::from_str::<MembersRequest>(json).ok();
            assert_eq!(parsed, expected, "json {json}");
        }
    }
}

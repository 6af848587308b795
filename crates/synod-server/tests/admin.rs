//! The HTTP admin API served against fake nodes: JSON routes, Prometheus text, membership
//! requests, and the dashboard as headless Chromium renders it.

#[path = "support/chromium.rs"]
mod chromium;
#[path = "support/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use synod_server::admin::{AdminBackend, MembersRequest, router};
use synod_server::metrics::{ActorRow, CommandOutcome, Metrics, NodeFigures};
use synod_server::{FollowerStatus, MemberEndpoints, NodeStatus, ReadLevel};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Virtual time the dashboard gets to poll before its DOM is read: several 500 ms polls.
const DASHBOARD_WAIT_MS: u64 = 3_000;

/// Longest the test waits for a condition (a rendered page, a stopped listener).
const CONDITION_DEADLINE: Duration = Duration::from_secs(90);

/// What the three fake nodes agree on: who leads in which term, and where each serves.
struct Cluster {
    leader: AtomicU64,
    term: AtomicU64,
    members: Vec<MemberEndpoints>,
}

struct FakeNode {
    node: u64,
    cluster: Arc<Cluster>,
    changes: Mutex<Vec<MembersRequest>>,
}

impl FakeNode {
    fn current_status(&self) -> NodeStatus {
        let leader = self.cluster.leader.load(Ordering::SeqCst);
        let member = &self.cluster.members[(self.node - 1) as usize];
        let followers = if leader == self.node {
            self.cluster
                .members
                .iter()
                .filter(|other| other.node != self.node)
                .map(|other| FollowerStatus {
                    node: other.node,
                    voter: true,
                    lag_entries: other.node * 10,
                    lag_bytes: other.node * 1000,
                    lag_ms: other.node * 5,
                    active: true,
                })
                .collect()
        } else {
            Vec::new()
        };
        NodeStatus {
            node: self.node,
            cluster_id: 77,
            role: if leader == self.node {
                "leader"
            } else {
                "follower"
            }
            .to_string(),
            term: self.cluster.term.load(Ordering::SeqCst),
            leader: Some(leader),
            commit_index: 100,
            applied_index: 100 - self.node,
            last_log_index: 101,
            first_log_index: 1,
            snapshot_index: 0,
            voters: vec![1, 2, 3],
            learners: Vec::new(),
            followers,
            leader_contact_ms: Some(0),
            // The leader has measured a follower's clock 5% fast: leases are suspended.
            clock_skew_ppm_max: if leader == self.node { 48_951 } else { 0 },
            lease_suspended_by_skew: leader == self.node,
            degraded: None,
            keys: 42,
            revision: 100,
            sessions: 3,
            uptime_ms: 60_000,
            connected_clients: 2,
            resp_address: member.resp_address.clone(),
            http_address: member.http_address.clone(),
            peer_address: "127.0.0.1:1".to_string(),
            members: self.cluster.members.clone(),
        }
    }

    fn actor_rows(&self) -> Vec<ActorRow> {
        let row = |path: &str, name: &str, depth: u64| ActorRow {
            path: path.to_string(),
            name: name.to_string(),
            mailbox_depth: depth,
            mailbox_high_water: depth * 4,
            restarts: 1,
            dropped: 0,
        };
        vec![
            row("node", "node", 0),
            row("node/replica", "replica", 3),
            row("node/wal", "wal", 1),
        ]
    }
}

impl AdminBackend for FakeNode {
    async fn status(&self) -> Result<NodeStatus, String> {
        Ok(self.current_status())
    }

    async fn figures(&self) -> Result<NodeFigures, String> {
        let mut figures = NodeFigures::from_status(self.current_status());
        figures.raft.push(("leader_changes".to_string(), 2));
        figures.replica.push(("entries_applied".to_string(), 100));
        figures.replica.push(("Entries Applied".to_string(), 7));
        figures.wal.push(("fsyncs_total".to_string(), 40));
        figures.wal.push(("bytes_written".to_string(), 81_920));
        figures.actors = self.actor_rows();
        Ok(figures)
    }

    async fn supervision(&self) -> Result<Vec<ActorRow>, String> {
        Ok(self.actor_rows())
    }

    async fn change_members(&self, request: MembersRequest) -> Result<String, String> {
        let target = match request {
            MembersRequest::AddLearner { node }
            | MembersRequest::Promote { node }
            | MembersRequest::Remove { node } => node,
            MembersRequest::TransferLeader { to } => to,
        };
        if target > 5 {
            return Err(format!("node {target} is not known to the cluster"));
        }
        self.changes
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .push(request);
        Ok(format!("accepted {request:?}"))
    }
}

/// Three fake nodes, each served on a loopback listener of its own.
struct FakeCluster {
    cluster: Arc<Cluster>,
    nodes: Vec<Arc<FakeNode>>,
    metrics: Vec<Arc<Metrics>>,
    servers: Vec<JoinHandle<()>>,
}

impl FakeCluster {
    async fn start() -> anyhow::Result<FakeCluster> {
        let mut listeners = Vec::new();
        let mut members = Vec::new();
        for node in 1..=3u64 {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            members.push(MemberEndpoints {
                node,
                resp_address: format!("127.0.0.1:{}", 6000 + node),
                http_address: listener.local_addr()?.to_string(),
            });
            listeners.push(listener);
        }
        let cluster = Arc::new(Cluster {
            leader: AtomicU64::new(1),
            term: AtomicU64::new(3),
            members,
        });
        let (mut nodes, mut metrics, mut servers) = (Vec::new(), Vec::new(), Vec::new());
        for (index, listener) in listeners.into_iter().enumerate() {
            let node = Arc::new(FakeNode {
                node: index as u64 + 1,
                cluster: Arc::clone(&cluster),
                changes: Mutex::new(Vec::new()),
            });
            let node_metrics = Arc::new(Metrics::new());
            let app = router(Arc::clone(&node), Arc::clone(&node_metrics));
            servers.push(tokio::spawn(async move {
                axum::serve(listener, app)
                    .await
                    .expect("serving the admin API");
            }));
            nodes.push(node);
            metrics.push(node_metrics);
        }
        Ok(FakeCluster {
            cluster,
            nodes,
            metrics,
            servers,
        })
    }

    fn address(&self, node: u64) -> String {
        self.cluster.members[(node - 1) as usize]
            .http_address
            .clone()
    }

    /// Stops serving `node` and waits until its port refuses connections.
    async fn stop(&self, node: u64) -> anyhow::Result<()> {
        self.servers[(node - 1) as usize].abort();
        let address = self.address(node);
        let deadline = Instant::now() + CONDITION_DEADLINE;
        while tokio::net::TcpStream::connect(&address).await.is_ok() {
            ensure!(
                Instant::now() < deadline,
                "node {node} still accepts connections"
            );
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

fn json(answer: &http::Answer) -> anyhow::Result<Value> {
    serde_json::from_str(&answer.body).with_context(|| format!("not JSON: {}", answer.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_routes_answer_with_the_nodes_state() -> anyhow::Result<()> {
    // Checks /status, /members, /supervision (JSON and text), /stats and the unknown-route
    // answer, and that every answer allows any origin.
    let cluster = FakeCluster::start().await?;
    let address = cluster.address(2);

    let status = http::request(&address, "GET", "/status", "").await?;
    assert_eq!(status.status, 200);
    assert_eq!(status.header("access-control-allow-origin"), Some("*"));
    let status = json(&status)?;
    assert_eq!(status["node"], 2);
    assert_eq!(status["role"], "follower");
    assert_eq!(status["leader"], 1);
    assert_eq!(status["term"], 3);
    assert_eq!(status["clock_skew_ppm_max"], 0);
    assert_eq!(status["lease_suspended_by_skew"], false);
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        status["members"][0]["http_address"],
        cluster.address(1).as_str()
    );

    let members = json(&http::request(&address, "GET", "/members", "").await?)?;
    assert_eq!(members["voters"], serde_json::json!([1, 2, 3]));
    assert_eq!(members["learners"], serde_json::json!([]));
    assert_eq!(members["members"][2]["node"], 3);

    let rows = json(&http::request(&address, "GET", "/supervision", "").await?)?;
    assert_eq!(rows[1]["path"], "node/replica");
    assert_eq!(rows[1]["mailbox_depth"], 3);
    let tree = http::request(&address, "GET", "/supervision?format=text", "").await?;
    assert_eq!(tree.status, 200);
    assert!(
        tree.body.contains("\n  replica  mailbox 3 (high 12)"),
        "tree {}",
        tree.body
    );
    let bad_format = http::request(&address, "GET", "/supervision?format=xml", "").await?;
    assert_eq!(bad_format.status, 400);
    assert!(
        json(&bad_format)?["error"]
            .as_str()
            .unwrap_or("")
            .contains("format=text")
    );

    cluster.metrics[1].record_command("get", Some(ReadLevel::Lease), 0.002, CommandOutcome::Ok);
    let stats = http::request(&address, "GET", "/stats", "").await?;
    assert_eq!(stats.header("access-control-allow-origin"), Some("*"));
    let seconds = json(&stats)?["seconds"]
        .as_array()
        .cloned()
        .context("seconds")?;
    assert_eq!(seconds.len(), 120);
    assert!(seconds[0]["unix_ms"].is_u64() && seconds[0]["p99_us"].is_u64());

    let missing = http::request(&address, "GET", "/nowhere", "").await?;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    assert!(json(&missing)?["error"].is_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_requests_are_parsed_and_forwarded() -> anyhow::Result<()> {
    // Checks that POST /members forwards good requests (200 with the backend's message),
    // refuses bad JSON with 400 naming the problem, and answers 503 with the backend's error.
    let cluster = FakeCluster::start().await?;
    let address = cluster.address(1);

    let body = r#"{"action":"add_learner","node":4}"#;
    let added = http::request(&address, "POST", "/members", body).await?;
    assert_eq!(added.status, 200, "body {}", added.body);
    assert_eq!(added.header("access-control-allow-origin"), Some("*"));
    assert!(
        json(&added)?["message"]
            .as_str()
            .unwrap_or("")
            .contains("AddLearner")
    );
    let body = r#"{"action":"transfer_leader","to":2}"#;
    assert_eq!(
        http::request(&address, "POST", "/members", body)
            .await?
            .status,
        200
    );
    let changes = cluster.nodes[0]
        .changes
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(
        changes,
        [
            MembersRequest::AddLearner { node: 4 },
            MembersRequest::TransferLeader { to: 2 }
        ]
    );

    let bad: [(&str, &str); 5] = [
        (
            r#"{"action":"explode","node":4}"#,
            "unknown variant `explode`",
        ),
        (r#"{"action":"promote"}"#, "missing field `node`"),
        (r#"{"action":"remove","node":"two"}"#, "invalid type"),
        (r#"{"action":"promote","node":4"#, "EOF"),
        ("", "EOF"),
    ];
    for (body, problem) in bad {
        let answer = http::request(&address, "POST", "/members", body).await?;
        assert_eq!(answer.status, 400, "body {body:?}");
        let error = json(&answer)?["error"].as_str().unwrap_or("").to_string();
        assert!(
            error.contains(problem),
            "body {body:?}: error {error:?} lacks {problem:?}"
        );
    }

    let refused = http::request(
        &address,
        "POST",
        "/members",
        r#"{"action":"promote","node":9}"#,
    )
    .await?;
    assert_eq!(refused.status, 503);
    assert_eq!(
        json(&refused)?["error"],
        "node 9 is not known to the cluster"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_prometheus_text() -> anyhow::Result<()> {
    // Checks that /metrics is served as Prometheus text 0.0.4 that parses line by line, with
    // one HELP and one TYPE per family, and holds the recorded and node-supplied figures.
    let cluster = FakeCluster::start().await?;
    let metrics = &cluster.metrics[0];
    metrics.record_command(
        "get",
        Some(ReadLevel::Linearizable),
        0.0003,
        CommandOutcome::Ok,
    );
    metrics.record_command("set", None, 0.02, CommandOutcome::Error);
    metrics.record_command("synod.cas", None, 12.0, CommandOutcome::Timeout);
    metrics.record_command("weird name\n\"x\"", None, 0.001, CommandOutcome::Refused);
    metrics.connection_opened();
    metrics.connection_opened();
    metrics.connection_closed();
    metrics.connections_refused();

    let answer = http::request(&cluster.address(1), "GET", "/metrics", "").await?;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let samples = parse_exposition(&answer.body)?;
    let expected: [(&str, f64); 16] = [
        (
            r#"synod_commands_total{command="get",level="linearizable",outcome="ok"}"#,
            1.0,
        ),
        (
            r#"synod_commands_total{command="other",level="none",outcome="refused"}"#,
            1.0,
        ),
        (
            r#"synod_command_duration_seconds_count{command="synod.cas",level="none"}"#,
            1.0,
        ),
        (
            r#"synod_command_duration_seconds_bucket{command="set",le="+Inf",level="none"}"#,
            1.0,
        ),
        ("synod_connections_open", 1.0),
        ("synod_connections_opened_total", 2.0),
        ("synod_connections_refused_total", 1.0),
        ("synod_raft_term", 3.0),
        ("synod_raft_clock_skew_ppm_max", 48_951.0),
        ("synod_raft_lease_suspended_by_skew", 1.0),
        ("synod_raft_leader_changes_total", 2.0),
        ("synod_replica_entries_applied_total", 100.0),
        ("synod_wal_fsyncs_total", 40.0),
        (
            r#"synod_follower_lag_entries{follower="2",voter="true"}"#,
            20.0,
        ),
        (r#"synod_follower_lag_ms{follower="3",voter="true"}"#, 15.0),
        (r#"synod_actor_mailbox_depth{actor="node/replica"}"#, 3.0),
    ];
    for (sample, value) in expected {
        assert_eq!(
            samples.get(sample),
            Some(&value),
            "sample {sample} in\n{}",
            answer.body
        );
    }
    let buckets = samples
        .keys()
        .filter(|name| name.contains("_seconds_bucket{command=\"get\""));
    assert_eq!(
        buckets.count(),
        19,
        "18 buckets from 50 µs to 10 s and +Inf"
    );
    Ok(())
}

/// Parses Prometheus text 0.0.4 strictly enough to catch what a scraper would refuse: every
/// line a comment or `name{labels} value`; HELP and TYPE once per family, before its
/// samples; each sample named after its family. Answers the samples, labels sorted by name.
fn parse_exposition(text: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut helps = BTreeMap::new();
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let context = || format!("line {}: {line:?}", number + 1);
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            ensure!(valid_name(name), "bad family name, {}", context());
            ensure!(
                helps.insert(name.to_string(), ()).is_none(),
                "second HELP, {}",
                context()
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').with_context(context)?;
            ensure!(helps.contains_key(name), "TYPE before HELP, {}", context());
            ensure!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad type, {}",
                context()
            );
            let fresh = types.insert(name.to_string(), kind.to_string()).is_none();
            ensure!(fresh, "second TYPE, {}", context());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, value) = parse_sample(line).with_context(context)?;
        let family = [
            ("_bucket", "histogram"),
            ("_sum", "histogram"),
            ("_count", "histogram"),
        ]
        .into_iter()
        .find_map(|(suffix, kind)| {
            let family = name.strip_suffix(suffix)?;
            (types.get(family).map(String::as_str) == Some(kind)).then_some(family)
        })
        .unwrap_or(name.as_str());
        ensure!(
            types.contains_key(family),
            "sample without TYPE, {}",
            context()
        );
        let key = if labels.is_empty() {
            name.clone()
        } else {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            format!("{name}{{{}}}", labels.join(","))
        };
        ensure!(
            samples.insert(key, value).is_none(),
            "repeated sample, {}",
            context()
        );
    }
    ensure!(helps.len() == types.len(), "a family has HELP without TYPE");
    Ok(samples)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `name{key="value",...} value`: the name, the labels (escapes kept) sorted, the value.
fn parse_sample(line: &str) -> anyhow::Result<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(valid_name(name), "bad metric name {name:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inside.split_once("=\"").context("label without =\"")?;
            ensure!(
                valid_name(key) && !key.contains(':'),
                "bad label name {key:?}"
            );
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, escaped @ ('\\' | '"' | 'n'))) => {
                            value.push('\\');
                            value.push(escaped);
                        }
                        other => bail!("bad escape {other:?} in label {key}"),
                    },
                    Some((index, '"')) => break index,
                    Some((_, '\n')) => bail!("raw newline in label {key}"),
                    Some((_, c)) => value.push(c),
                    None => bail!("unterminated label {key}"),
                }
            };
            ensure!(
                labels.insert(key.to_string(), value).is_none(),
                "repeated label {key}"
            );
            inside = &after[end + 1..];
            inside = inside.strip_prefix(',').unwrap_or(inside);
        }
    }
    let value = rest
        .strip_prefix(' ')
        .context("no space before the value")?;
    let value = value.split(' ').next().unwrap_or(value);
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse()
            .with_context(|| format!("bad value {other:?}"))?,
    };
    Ok((name.to_string(), labels, value))
}

/// The `tr.node` rows of a dumped dashboard as (node, role), and the headline's leader.
fn dashboard_view(dom: &str) -> (Vec<(String, String)>, Option<String>) {
    let rows = dom
        .split("<tr ")
        .skip(1)
        .filter_map(|tag| tag.split('>').next())
        .filter(|attributes| attribute(attributes, "class").as_deref() == Some("node"))
        .map(|attributes| {
            let node = attribute(attributes, "data-node").unwrap_or_default();
            (node, attribute(attributes, "data-role").unwrap_or_default())
        })
        .collect();
    let leader = dom
        .split("<span ")
        .skip(1)
        .filter_map(|tag| tag.split('>').next())
        .find(|attributes| attribute(attributes, "id").as_deref() == Some("leader"))
        .and_then(|attributes| attribute(attributes, "data-leader"));
    (rows, leader)
}

fn attribute(attributes: &str, name: &str) -> Option<String> {
    let start = attributes
        .find(&format!(" {name}=\""))
        .map(|at| at + name.len() + 3)
        .or_else(|| {
            attributes
                .starts_with(&format!("{name}=\""))
                .then_some(name.len() + 2)
        })?;
    let value = &attributes[start..];
    Some(value[..value.find('"')?].to_string())
}

/// Loads the dashboard from `address` until its DOM shows `wanted`, or fails at the
/// deadline with the last view.
async fn dashboard_until(
    address: &str,
    wanted: impl Fn(&[(String, String)], Option<&str>) -> bool,
) -> anyhow::Result<String> {
    let url = format!("http://{address}/dashboard");
    let deadline = Instant::now() + CONDITION_DEADLINE;
    loop {
        let dump_url = url.clone();
        let dom =
            tokio::task::spawn_blocking(move || chromium::dump_dom(&dump_url, DASHBOARD_WAIT_MS))
                .await??;
        let (rows, leader) = dashboard_view(&dom);
        if wanted(&rows, leader.as_deref()) {
            return Ok(dom);
        }
        if Instant::now() >= deadline {
            bail!("the dashboard at {url} shows rows {rows:?}, leader {leader:?}:\n{dom}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_follows_the_leader_in_headless_chromium() -> anyhow::Result<()> {
    // Checks in headless Chromium that the dashboard served by node 1 finds all three nodes
    // and names node 1 leader, and that after leadership moves to node 2 and node 1 stops,
    // the dashboard served by node 2 names node 2 leader and shows node 1 down.
    let cluster = FakeCluster::start().await?;
    for node_metrics in &cluster.metrics {
        node_metrics.record_command("get", None, 0.001, CommandOutcome::Ok);
    }

    let all_up = |rows: &[(String, String)], leader: Option<&str>| {
        rows.len() == 3 && leader == Some("1") && rows.iter().all(|(_, role)| role != "unknown")
    };
    let dom = dashboard_until(&cluster.address(1), all_up).await?;
    let (rows, _) = dashboard_view(&dom);
    let expected = [("1", "leader"), ("2", "follower"), ("3", "follower")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(node, role)| (node.to_string(), role.to_string()))
        .collect();
    assert_eq!(rows, expected);
    assert!(dom.contains("node 1 (term 3)"), "headline in\n{dom}");
    assert!(dom.contains("<polyline"), "charts in\n{dom}");

    cluster.cluster.term.store(4, Ordering::SeqCst);
    cluster.cluster.leader.store(2, Ordering::SeqCst);
    cluster.stop(1).await?;
    let moved = |rows: &[(String, String)], leader: Option<&str>| {
        leader == Some("2")
            && rows
                .iter()
                .any(|(node, role)| node == "1" && role == "down")
    };
    let dom = dashboard_until(&cluster.address(2), moved).await?;
    let (rows, _) = dashboard_view(&dom);
    let expected = [("1", "down"), ("2", "leader"), ("3", "follower")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(node, role)| (node.to_string(), role.to_string()))
        .collect();
    assert_eq!(rows, expected);
    assert!(dom.contains("node 2 (term 4)"), "headline in\n{dom}");
    Ok(())
}

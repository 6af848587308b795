//! Real-process tests of `synod up` and `synod server`: three processes on loopback, spoken
//! to over the Redis protocol, with nodes killed and restarted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use synod_server::{Reply, ReplyParser, RespLimits};

#[path = "../../synod-server/tests/support/chromium.rs"]
mod chromium;

/// A `synod up` cluster in a temporary directory, stopped (SIGTERM) when dropped.
struct Cluster {
    up: Option<Child>,
    dir: PathBuf,
    base: u16,
    nodes: u64,
    /// More flags for `synod up`.
    extra: Vec<String>,
    /// Environment variables for `synod up`, which its servers inherit (`SYNOD_*` config).
    env: Vec<(String, String)>,
}

/// A base port for test `slot`'s cluster whose nine ports are free now: candidates are
/// spread apart by process and slot, and a taken one moves on to the next.
fn base_port(slot: u16) -> u16 {
    // Ten slots of 225 ports per process (a slot uses base+1 to base+204), 20 processes
    // apart: no two tests share a range.
    assert!(slot < 10, "slot {slot}: the port plan has ten slots");
    let first = (std::process::id() % 20) as u16;
    (0..20)
        .map(|step| 20_000 + ((first + step) % 20) * 2_250 + slot * 225)
        .find(|base| {
            (1..=4).all(|id| {
                [0, 100, 200].iter().all(|offset| {
                    std::net::TcpListener::bind(("127.0.0.1", base + offset + id)).is_ok()
                })
            })
        })
        .expect("a free range of ports")
}

impl Cluster {
    fn start(nodes: u64, slot: u16) -> Cluster {
        Cluster::start_with(nodes, slot, &[])
    }

    fn start_with(nodes: u64, slot: u16, extra: &[&str]) -> Cluster {
        Cluster::start_with_env(nodes, slot, extra, &[])
    }

    fn start_with_env(nodes: u64, slot: u16, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let name = format!("synod-cluster-test-{}-{slot}", std::process::id());
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let base = base_port(slot);
        let mut cluster = Cluster {
            up: None,
            dir,
            base,
            nodes,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            env: env
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        };
        cluster.launch();
        cluster
    }

    fn launch(&mut self) {
        let up = Command::new(env!("CARGO_BIN_EXE_synod"))
            .args(["up", "--nodes", &self.nodes.to_string(), "--base-port"])
            .arg(self.base.to_string())
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--seconds")
            .arg("300")
            .args(&self.extra)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start synod up");
        self.up = Some(up);
        for id in 1..=self.nodes {
            wait_for(Duration::from_secs(30), || {
                connect(self.resp(id)).is_some_and(|mut conn| {
                    matches!(conn.call(&["PING"]), Some(Reply::Simple(text)) if text == "PONG")
                })
            });
        }
    }

    fn resp(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + id as u16))
    }

    fn http(&self, id: u64) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base + 100 + id as u16))
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn pid(&self, id: u64) -> u32 {
        read_pid(&self.node_dir(id))
    }

    /// Stops `synod up` with SIGTERM and returns its exit status.
    fn stop(&mut self) -> Option<i32> {
        let mut up = self.up.take()?;
        signal(up.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = up.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = up.kill();
        let _ = up.wait();
        None
    }

    /// A node other than `old` that says it leads, once one does.
    fn leader_other_than(&self, old: u64) -> u64 {
        let mut leader = None;
        wait_for(Duration::from_secs(20), || {
            leader = (1..=self.nodes)
                .filter(|id| *id != old)
                .find(|id| self.says_it_leads(*id));
            leader.is_some()
        });
        leader.expect("a leader")
    }

    /// The node that says it leads, once one does.
    fn leader(&self) -> u64 {
        self.leader_other_than(0)
    }

    fn says_it_leads(&self, id: u64) -> bool {
        connect(self.resp(id)).is_some_and(|mut conn| {
            let info = conn.call(&["INFO", "replication"]);
            matches!(info, Some(Reply::Bulk(Some(text)))
                if String::from_utf8_lossy(&text).contains("role:master"))
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut up) = self.up.take() {
            signal(up.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = up.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = up.kill();
            let _ = up.wait();
        }
        for id in 1..=self.nodes {
            let path = self.node_dir(id).join("synod.pid");
            if let Ok(text) = std::fs::read_to_string(path)
                && let Ok(pid) = text.trim().parse::<u32>()
            {
                signal(pid, "-KILL");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_pid(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("synod.pid")).expect("pid file");
    text.trim().parse().expect("pid")
}

fn signal(pid: u32, which: &str) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
}

fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("condition not met within {timeout:?}");
}

/// A plain RESP connection.
struct Conn {
    stream: TcpStream,
    parser: ReplyParser,
    buffer: BytesMut,
}

fn connect(address: SocketAddr) -> Option<Conn> {
    let stream = TcpStream::connect_timeout(&address, Duration::from_millis(500)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    Some(Conn {
        stream,
        parser: ReplyParser::new(RespLimits::default()),
        buffer: BytesMut::new(),
    })
}

impl Conn {
    fn send(&mut self, args: &[&str]) -> Option<()> {
        let mut out = format!("*{}\r\n", args.len());
        for arg in args {
            out.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        self.stream.write_all(out.as_bytes()).ok()
    }

    fn receive(&mut self) -> Option<Reply> {
        loop {
            if let Ok(Some(reply)) = self.parser.feed(&mut self.buffer) {
                return Some(reply);
            }
            let mut chunk = [0u8; 4096];
            let read = self.stream.read(&mut chunk).ok()?;
            if read == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn call(&mut self, args: &[&str]) -> Option<Reply> {
        self.send(args)?;
        self.receive()
    }
}

/// One HTTP/1.1 request; the whole response as text.
fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send HTTP");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(bytes::Bytes::copy_from_slice(text.as_bytes())))
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

#[test]
fn a_three_node_cluster_serves_redis_commands_survives_a_leader_kill_and_stops_cleanly() {
    // Checks synod up's cluster: writes on any node, reads at every level, pipelining,
    // MULTI/EXEC, a kill -9 of the leader with no acknowledged write lost, and exit 0 on
    // SIGTERM.
    let mut cluster = Cluster::start(3, 0);
    let leader = cluster.leader();
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let mut on_leader = connect(cluster.resp(leader)).expect("connect leader");
    let mut on_follower = connect(cluster.resp(follower)).expect("connect follower");
    assert_eq!(on_leader.call(&["SET", "greeting", "hello"]), Some(ok()));
    // A follower forwards writes to the leader and serves linearizable reads.
    assert_eq!(on_follower.call(&["SET", "from-follower", "1"]), Some(ok()));
    assert_eq!(on_follower.call(&["GET", "greeting"]), Some(bulk("hello")));
    assert_eq!(on_leader.call(&["GET", "from-follower"]), Some(bulk("1")));
    for level in ["lease", "follower", "stale", "linearizable"] {
        assert_eq!(
            on_follower.call(&["SYNOD.READ-LEVEL", level]),
            Some(ok()),
            "{level}"
        );
        wait_for(Duration::from_secs(5), || {
            on_follower.call(&["GET", "greeting"]) == Some(bulk("hello"))
        });
    }
    // Stale reads on a follower still read the connection's own writes: each read carries
    // the highest index the connection has seen, and the follower waits until it has
    // applied that far.
    assert_eq!(on_follower.call(&["SYNOD.READ-LEVEL", "stale"]), Some(ok()));
    for index in 0..50 {
        let value = format!("own-{index}");
        assert_eq!(on_follower.call(&["SET", "own", &value]), Some(ok()));
        assert_eq!(
            on_follower.call(&["GET", "own"]),
            Some(bulk(&value)),
            "read-your-writes"
        );
    }
    assert_eq!(
        on_follower.call(&["SYNOD.READ-LEVEL", "linearizable"]),
        Some(ok())
    );
    // Pipelining: a thousand commands in one write, answered in order.
    let mut pipeline = String::new();
    for index in 0..1_000 {
        let (key, value) = (format!("p{index}"), format!("v{index}"));
        pipeline.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        ));
        pipeline.push_str(&format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()));
    }
    on_follower
        .stream
        .write_all(pipeline.as_bytes())
        .expect("pipeline");
    for index in 0..1_000 {
        assert_eq!(on_follower.receive(), Some(ok()), "SET p{index}");
        assert_eq!(
            on_follower.receive(),
            Some(bulk(&format!("v{index}"))),
            "GET p{index}"
        );
    }
    // MULTI/EXEC is one atomic transaction.
    assert_eq!(on_leader.call(&["MULTI"]), Some(ok()));
    assert_eq!(
        on_leader.call(&["SET", "a", "1"]),
        Some(Reply::Simple("QUEUED".into()))
    );
    assert_eq!(
        on_leader.call(&["SET", "b", "2"]),
        Some(Reply::Simple("QUEUED".into()))
    );
    assert_eq!(
        on_leader.call(&["EXEC"]),
        Some(Reply::Array(Some(vec![ok(), ok()])))
    );
    assert_eq!(
        on_leader.call(&["MGET", "a", "b", "missing"]),
        Some(Reply::Array(Some(vec![
            bulk("1"),
            bulk("2"),
            Reply::Bulk(None)
        ])))
    );
    assert_eq!(
        on_leader.call(&["INCR", "counter"]),
        Some(Reply::Integer(1))
    );
    // An operator moves leadership through the admin API, then scrapes the metrics.
    let body = format!("{{\"action\":\"transfer_leader\",\"to\":{follower}}}");
    let answer = http(cluster.http(follower), "POST", "/members", &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let leader = cluster.leader_other_than(leader);
    assert_eq!(leader, follower, "leadership moved where it was asked to");
    let metrics = http(cluster.http(leader), "GET", "/metrics", "");
    assert!(metrics.contains("synod_commands_total{"), "{metrics}");
    assert!(metrics.contains("synod_wal_disk_syncs_total"), "{metrics}");
    // Kill the leader outright: the others elect a new one and lose nothing.
    signal(cluster.pid(leader), "-KILL");
    let survivor = (1..=3).find(|id| *id != leader).expect("a survivor");
    let mut conn = connect(cluster.resp(survivor)).expect("connect survivor");
    wait_for(Duration::from_secs(20), || {
        conn.call(&["SET", "after-kill", "yes"]) == Some(ok())
    });
    assert_eq!(conn.call(&["GET", "greeting"]), Some(bulk("hello")));
    assert_eq!(conn.call(&["GET", "p999"]), Some(bulk("v999")));
    assert_eq!(conn.call(&["INCR", "counter"]), Some(Reply::Integer(2)));
    assert_eq!(cluster.stop(), Some(0), "synod up exits 0 on SIGTERM");
    // Restart from the same data: everything acknowledged is there.
    cluster.launch();
    cluster.leader();
    let mut conn = connect(cluster.resp(1)).expect("connect after restart");
    // Until node 1 hears from the new leader it refuses with TRYAGAIN.
    wait_for(Duration::from_secs(20), || {
        conn.call(&["GET", "after-kill"]) == Some(bulk("yes"))
    });
    assert_eq!(conn.call(&["GET", "p500"]), Some(bulk("v500")));
    assert_eq!(conn.call(&["GET", "counter"]), Some(bulk("2")));
}

/// The leader the dashboard shows, and how many node rows it has.
fn dashboard_view(url: &str) -> Option<(String, usize)> {
    let dom = match chromium::dump_dom(url, 3_000) {
        Ok(dom) => dom,
        Err(error) => {
            eprintln!("chromium: {error:#}");
            return None;
        }
    };
    let rows = dom.matches("class=\"node\"").count();
    let marker = "id=\"leader\" data-leader=\"";
    let start = dom.find(marker)? + marker.len();
    let leader: String = dom[start..].chars().take_while(|c| *c != '"').collect();
    Some((leader, rows))
}

#[test]
fn the_dashboard_shows_three_nodes_and_follows_a_leader_change_in_headless_chromium() {
    // Checks the page synod serves, in a real browser against a real cluster: three node
    // rows and the current leader, then the new leader after the old one is killed.
    let cluster = Cluster::start(3, 1);
    let leader = cluster.leader();
    let survivor = (1..=3).find(|id| *id != leader).expect("a survivor");
    let url = format!("http://{}/", cluster.http(survivor));
    let mut seen = None;
    wait_for(Duration::from_secs(60), || {
        seen = dashboard_view(&url);
        eprintln!("dashboard shows {seen:?}, leader is {leader}");
        seen == Some((leader.to_string(), 3))
    });
    signal(cluster.pid(leader), "-KILL");
    let new_leader = cluster.leader_other_than(leader);
    wait_for(Duration::from_secs(60), || {
        seen = dashboard_view(&url);
        seen.as_ref()
            .is_some_and(|(shown, rows)| *shown == new_leader.to_string() && *rows == 3)
    });
}

#[test]
fn kill_dash_nine_of_every_node_under_load_loses_no_acknowledged_write() {
    // Checks durability of the real processes: writers run against the cluster, every node
    // is killed with SIGKILL mid-stream, and after a restart every acknowledged write is
    // there with its value.
    let mut cluster = Cluster::start(3, 2);
    cluster.leader();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (1..=3u64)
        .map(|writer| {
            let (address, stop) = (cluster.resp(writer), stop.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let Some(mut conn) = connect(address) else {
                    return acknowledged;
                };
                for index in 0..100_000u64 {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("w{writer}-{index}");
                    match conn.call(&["SET", &key, &index.to_string()]) {
                        Some(Reply::Simple(text)) if text == "OK" => acknowledged.push(key),
                        Some(_) => {}
                        None => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1_500));
    for id in 1..=3 {
        signal(cluster.pid(id), "-KILL");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged: Vec<String> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("writer"))
        .collect();
    assert!(
        acknowledged.len() > 50,
        "too few writes acknowledged ({}) to test anything",
        acknowledged.len()
    );
    cluster.stop();
    cluster.launch();
    cluster.leader();
    let mut conn = connect(cluster.resp(1)).expect("connect after restart");
    for key in &acknowledged {
        let index = key.rsplit('-').next().expect("index");
        assert_eq!(
            conn.call(&["GET", key]),
            Some(bulk(index)),
            "acknowledged write {key} lost after kill -9"
        );
    }
}

#[test]
fn the_client_library_follows_a_new_leader_and_applies_every_increment_exactly_once() {
    // Checks synod-client against real processes: it finds the leader, and when the leader
    // is killed mid-stream its retries (same session sequence) apply each INCR exactly once,
    // so the counter reads 1, 2, 3, ... with no gap and no double step.
    let cluster = Cluster::start(3, 3);
    let leader = cluster.leader();
    let seeds: Vec<String> = (1..=3).map(|id| cluster.resp(id).to_string()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let config = synod_client::ClientConfig {
            request_timeout: Duration::from_millis(1_500),
            operation_deadline: Duration::from_secs(30),
            ..synod_client::ClientConfig::default()
        };
        let mut client = synod_client::Client::new(&seeds, config).expect("client");
        // The kill comes from another thread while increments stream, so one is likely in
        // flight (its outcome unknown to the client) when the leader dies.
        let leader_pid = cluster.pid(leader);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            signal(leader_pid, "-KILL");
        });
        for expected in 1..=1_000i64 {
            let value = client.incr(b"counter").await.expect("incr");
            assert_eq!(value, expected, "every increment applies exactly once");
        }
        killer.join().expect("killer");
        assert_eq!(
            client.get(b"counter").await.expect("get").as_deref(),
            Some(&b"1000"[..])
        );
    });
}

#[test]
fn an_operator_adds_a_fourth_node_as_a_learner_and_promotes_it_through_the_admin_api() {
    // Checks membership change on real processes: node 4 runs but does not vote, is added as
    // a learner and catches up (it serves the data at the stale level), then is promoted to
    // voter, all through POST /members.
    let cluster = Cluster::start_with(4, 4, &["--voters", "3"]);
    let leader = cluster.leader();
    let mut conn = connect(cluster.resp(leader)).expect("connect leader");
    assert_eq!(conn.call(&["SET", "before-join", "1"]), Some(ok()));
    let add = http(
        cluster.http(leader),
        "POST",
        "/members",
        r#"{"action":"add_learner","node":4}"#,
    );
    assert!(add.starts_with("HTTP/1.1 200"), "{add}");
    let mut fourth = connect(cluster.resp(4)).expect("connect node 4");
    assert_eq!(fourth.call(&["SYNOD.READ-LEVEL", "stale"]), Some(ok()));
    wait_for(Duration::from_secs(20), || {
        fourth.call(&["GET", "before-join"]) == Some(bulk("1"))
    });
    let promote = http(
        cluster.http(leader),
        "POST",
        "/members",
        r#"{"action":"promote","node":4}"#,
    );
    assert!(promote.starts_with("HTTP/1.1 200"), "{promote}");
    let status = http(cluster.http(leader), "GET", "/members", "");
    assert!(status.contains(r#""voters":[1,2,3,4]"#), "{status}");
    // The new voter serves linearizable reads and forwards writes like any member.
    assert_eq!(
        fourth.call(&["SYNOD.READ-LEVEL", "linearizable"]),
        Some(ok())
    );
    assert_eq!(fourth.call(&["SET", "after-join", "2"]), Some(ok()));
    assert_eq!(conn.call(&["GET", "after-join"]), Some(bulk("2")));
}

#[test]
fn lab_latency_measures_every_level_and_writes_its_report() {
    // Checks `synod lab latency` end to end on a cluster it starts: every row measured with
    // no errors, and the Markdown and HTML reports written with each level explained.
    let base = base_port(5);
    let report = std::env::temp_dir().join(format!("synod-lab-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report);
    let output = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args([
            "lab",
            "latency",
            "--seconds",
            "1",
            "--clients",
            "4",
            "--keys",
            "50",
        ])
        .args(["--base-port", &base.to_string()])
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run synod lab latency");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for row in [
        "write",
        "read, linearizable",
        "read, lease",
        "read, follower",
        "read, stale",
    ] {
        assert!(
            stdout.contains(&format!("| {row} |")),
            "{row} missing:\n{stdout}"
        );
    }
    let markdown = std::fs::read_to_string(report.join("lab-latency.md")).expect("markdown");
    assert!(markdown.contains("PACELC"), "{markdown}");
    let html = std::fs::read_to_string(report.join("lab-latency.html")).expect("html");
    assert!(
        html.contains("<svg") && html.contains("read, follower"),
        "{html}"
    );
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn lab_skew_suspends_the_lease_outside_the_drift_bound_and_keeps_every_history_linearizable() {
    // Checks `synod lab skew` end to end on a cluster it starts: the lease is served with no
    // skew and with a drift inside the bound, suspended (lease reads refused for skew) with a
    // drift far outside it, served again once the drift is removed, and every phase's
    // history is linearizable; the Markdown and HTML reports are written.
    let base = base_port(6);
    let report = std::env::temp_dir().join(format!("synod-lab-skew-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&report);
    let output = Command::new(env!("CARGO_BIN_EXE_synod"))
        .args([
            "lab",
            "skew",
            "--seconds",
            "1",
            "--clients",
            "4",
            "--keys",
            "20",
        ])
        .args(["--base-port", &base.to_string()])
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run synod lab skew");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let row = |phase: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|line| line.starts_with(&format!("| {phase} |")))
            .unwrap_or_else(|| panic!("no row {phase}:\n{stdout}"));
        line.split(" | ").map(str::to_string).collect()
    };
    // Columns: phase, drift, lease after the change, skew proven, lease at the end, reads
    // by lease, reads by ReadIndex, refused for skew, ops/s, read p50 / p99, history.
    let number = |cells: &[String], column: usize| cells[column].parse::<u64>().unwrap();
    for phase in ["no skew", "inside the bound", "back inside"] {
        let cells = row(phase);
        assert_eq!(cells[4], "served", "{phase}:\n{stdout}");
        assert_eq!(number(&cells, 7), 0, "{phase}:\n{stdout}");
        assert!(number(&cells, 5) > 0, "{phase}:\n{stdout}");
        assert_eq!(cells[10], "linearizable", "{phase}:\n{stdout}");
    }
    let outside = row("outside the bound");
    assert_eq!(outside[4], "suspended", "{stdout}");
    assert!(number(&outside, 7) > 0, "{stdout}");
    assert_eq!(outside[10], "linearizable", "{stdout}");
    let markdown = std::fs::read_to_string(report.join("lab-skew.md")).expect("markdown");
    assert!(markdown.contains("What the columns mean"), "{markdown}");
    let html = std::fs::read_to_string(report.join("lab-skew.html")).expect("html");
    assert!(
        html.contains("<svg") && html.contains("outside the bound"),
        "{html}"
    );
    let _ = std::fs::remove_dir_all(&report);
}

/// The `"term"` of node `id`'s `/status`.
fn status_term(cluster: &Cluster, id: u64) -> u64 {
    let response = http(cluster.http(id), "GET", "/status", "");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let status: serde_json::Value = serde_json::from_str(body).expect("/status is JSON");
    status["term"].as_u64().expect("a term")
}

fn info_text(conn: &mut Conn, section: &str) -> String {
    match conn.call(&["INFO", section]) {
        Some(Reply::Bulk(Some(text))) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("INFO {section}: {other:?}"),
    }
}

#[test]
fn a_flood_over_the_admission_limit_is_refused_with_busy_and_a_node_without_quorum_says_so() {
    // Checks overload protection on real processes: with the client-request limit fixed at
    // 4 (one slot kept for critical requests, no queue), 200 pipelined writes at the leader
    // get some -BUSY ... retry later refusals at once and the rest succeed; PING and INFO
    // are still answered, the refusals are counted in /metrics, and no node's term moves
    // (the leader keeps its lead). Then a follower cut off from the other two (both
    // SIGSTOPped) reports itself degraded in INFO, refuses a write with -TRYAGAIN no quorum
    // without waiting out the request timeout, and still serves a stale read. Last, a
    // paused leader strands what a follower forwarded to it: once the others elect a new
    // leader, the follower fails the write at once as "leader changed" (outcome unknown)
    // and sends the read on to the new leader, neither waiting out the 60 s timeout.
    // The election timeout is 1 s: what the term check asks is whether the flood moves the
    // leader, and a 300 ms timeout would also fire when a test machine running other
    // clusters leaves a node without a CPU for that long.
    let env = [
        ("SYNOD_RAFT__ELECTION_TIMEOUT_MS", "1000"),
        ("SYNOD_RESILIENCE__LIMIT_MIN", "4"),
        ("SYNOD_RESILIENCE__LIMIT_INITIAL", "4"),
        ("SYNOD_RESILIENCE__LIMIT_MAX", "4"),
        ("SYNOD_RESILIENCE__QUEUE_CAPACITY", "0"),
        ("SYNOD_RESILIENCE__RESERVED_FOR_HIGH", "0"),
        ("SYNOD_RESILIENCE__RESERVED_FOR_CRITICAL", "1"),
        ("SYNOD_LIMITS__REQUEST_TIMEOUT_MS", "60000"),
    ];
    let cluster = Cluster::start_with_env(3, 7, &[], &env);
    let leader = cluster.leader();
    let mut conn = connect(cluster.resp(leader)).expect("connect to the leader");
    // Retried while a young cluster may still move its leadership (the same value each
    // time, so a write of unknown outcome does no harm).
    wait_for(Duration::from_secs(20), || {
        conn.call(&["SET", "flood", "before"]) == Some(ok())
    });
    let terms_before: Vec<u64> = (1..=3).map(|id| status_term(&cluster, id)).collect();
    let keys: Vec<String> = (0..200).map(|index| format!("flood-{index}")).collect();
    let mut pipeline = String::new();
    for key in &keys {
        pipeline.push_str(&format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n",
            key.len()
        ));
    }
    conn.stream
        .write_all(pipeline.as_bytes())
        .expect("send the flood");
    let (mut busy, mut written) = (0, 0);
    for key in &keys {
        match conn.receive().expect("a reply") {
            Reply::Simple(text) if text == "OK" => written += 1,
            Reply::Error(text) if text.starts_with("BUSY synod is overloaded") => {
                assert!(text.ends_with("retry later"), "{text}");
                busy += 1;
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(busy > 0, "no request was refused: {written} written");
    assert!(written > 0, "every request was refused");
    assert_eq!(conn.call(&["PING"]), Some(Reply::Simple("PONG".into())));
    assert!(info_text(&mut conn, "synod").contains("synod_degraded:0"));
    let metrics = http(cluster.http(leader), "GET", "/metrics", "");
    assert!(
        metrics.contains(
            r#"synod_admission_total{priority="high",group="default",outcome="refused"}"#
        ),
        "{metrics}"
    );
    // The leader still says it leads, in the same term. Asked on a new connection, which
    // a busy machine may answer late or refuse while the flood's last slots are released,
    // so asked again within a bound; a leader that stepped down could lead again only in a
    // later term, which the terms compared after it would show.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.says_it_leads(leader) {
        let info = connect(cluster.resp(leader)).map(|mut conn| conn.call(&["INFO"]));
        let status = http(cluster.http(leader), "GET", "/status", "");
        assert!(
            Instant::now() < deadline,
            "node {leader} no longer says it leads after the flood: INFO {info:?}; /status \
             {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let terms_after: Vec<u64> = (1..=3).map(|id| status_term(&cluster, id)).collect();
    assert_eq!(terms_before, terms_after, "a term moved during the flood");

    // Cut one follower off: stop the other two processes.
    let follower = (1..=3).find(|id| *id != leader).expect("a follower");
    let others: Vec<u64> = (1..=3).filter(|id| *id != follower).collect();
    for id in &others {
        signal(cluster.pid(*id), "-STOP");
    }
    let mut cut = connect(cluster.resp(follower)).expect("connect to the follower");
    wait_for(Duration::from_secs(30), || {
        info_text(&mut cut, "synod").contains("synod_degraded:1")
    });
    let info = info_text(&mut cut, "synod");
    assert!(info.contains("synod_degraded_reason:no quorum"), "{info}");
    match cut.call(&["SET", "flood", "after"]) {
        Some(Reply::Error(text)) => assert!(text.starts_with("TRYAGAIN no quorum"), "{text}"),
        other => panic!("a write without quorum: {other:?}"),
    }
    assert_eq!(cut.call(&["SYNOD.READ-LEVEL", "stale"]), Some(ok()));
    assert_eq!(cut.call(&["GET", "flood"]), Some(bulk("before")));
    for id in &others {
        signal(cluster.pid(*id), "-CONT");
    }

    // Pause the leader with a write and a read out at it through a follower, once the
    // cluster has settled: a follower's write goes through and the leader still leads.
    let (mut leader, mut follower) = (0, 0);
    wait_for(Duration::from_secs(30), || {
        leader = cluster.leader();
        follower = (1..=3).find(|id| *id != leader).expect("a follower");
        connect(cluster.resp(follower))
            .and_then(|mut conn| conn.call(&["SET", "stranded", "before"]))
            == Some(ok())
            && cluster.says_it_leads(leader)
    });
    let mut writer = connect(cluster.resp(follower)).expect("connect to the follower");
    let mut reader = connect(cluster.resp(follower)).expect("connect to the follower");
    signal(cluster.pid(leader), "-STOP");
    writer
        .send(&["SET", "stranded", "during"])
        .expect("send the write");
    reader.send(&["GET", "stranded"]).expect("send the read");
    match writer.receive() {
        Some(Reply::Error(text)) => assert!(
            text.starts_with("ERR synod: the leader changed before the write was answered"),
            "{text}"
        ),
        other => panic!("the stranded write: {other:?}"),
    }
    match reader.receive() {
        Some(Reply::Bulk(Some(value))) => {
            assert!(value == "before" || value == "during", "{value:?}");
        }
        other => panic!("the stranded read: {other:?}"),
    }
    signal(cluster.pid(leader), "-CONT");
}

/// The state `node`'s breaker for `peer` is in, from its /metrics (`None`: not shown).
fn peer_breaker_state(cluster: &Cluster, node: u64, peer: u64) -> Option<String> {
    let metrics = http(cluster.http(node), "GET", "/metrics", "");
    let prefix = format!("synod_peer_breaker_state{{peer=\"{peer}\",state=\"");
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(&prefix)?;
        let (state, value) = rest.split_once("\"} ")?;
        (value.trim() == "1").then(|| state.to_string())
    })
}

/// A counter of `node`'s /metrics for `peer`.
fn peer_counter(cluster: &Cluster, node: u64, family: &str, peer: u64) -> u64 {
    let metrics = http(cluster.http(node), "GET", "/metrics", "");
    let prefix = format!("{family}_total{{peer=\"{peer}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_paused_followers_breaker_opens_writes_go_on_and_it_closes_after_recovery() {
    // Checks the transport's per-peer circuit breaker on real processes: with one follower
    // paused (SIGSTOP), the leader's breaker for it opens (shown in /metrics) while every
    // write through the leader still succeeds on the other follower's acknowledgements;
    // after SIGCONT the breaker's trial is answered, it closes, and the follower catches up
    // with every write.
    // A short answer timeout (the default is eight election timeouts) keeps the test quick.
    let env = [("SYNOD_RESILIENCE__PEER_ANSWER_TIMEOUT_MS", "500")];
    let cluster = Cluster::start_with_env(3, 8, &[], &env);
    let leader = cluster.leader();
    let slow = (1..=3).find(|id| *id != leader).expect("a follower");
    wait_for(Duration::from_secs(30), || {
        peer_breaker_state(&cluster, leader, slow).as_deref() == Some("closed")
    });
    let mut conn = connect(cluster.resp(leader)).expect("connect to the leader");
    signal(cluster.pid(slow), "-STOP");
    let mut written = 0u64;
    let mut opened = false;
    // Bounded: at most 3000 writes; the breaker opens after about two answer timeouts.
    for index in 0..3_000u64 {
        let value = index.to_string();
        assert_eq!(
            conn.call(&["SET", "slow-follower", &value]),
            Some(ok()),
            "write {index} while a follower is paused"
        );
        written = index + 1;
        if index % 50 == 49 && peer_breaker_state(&cluster, leader, slow).as_deref() == Some("open")
        {
            opened = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(opened, "the breaker for the paused follower never opened");
    assert!(peer_counter(&cluster, leader, "synod_peer_breaker_opened", slow) >= 1);
    // Writes go on while it is open.
    for index in written..written + 100 {
        let value = index.to_string();
        assert_eq!(conn.call(&["SET", "slow-follower", &value]), Some(ok()));
    }
    let last = (written + 99).to_string();
    signal(cluster.pid(slow), "-CONT");
    wait_for(Duration::from_secs(30), || {
        peer_breaker_state(&cluster, leader, slow).as_deref() == Some("closed")
    });
    let mut on_slow = connect(cluster.resp(slow)).expect("connect to the follower");
    assert_eq!(on_slow.call(&["SYNOD.READ-LEVEL", "stale"]), Some(ok()));
    wait_for(Duration::from_secs(30), || {
        on_slow.call(&["GET", "slow-follower"]) == Some(bulk(&last))
    });
}

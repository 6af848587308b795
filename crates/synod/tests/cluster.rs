//! Real-process tests of `synod up` and `synod server`: three processes on loopback, spoken
//! to over the Redis protocol, with nodes killed and restarted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use synod_server::{Reply, ReplyParser, RespLimits};

/// A `synod up` cluster in a temporary directory, stopped (SIGTERM) when dropped.
struct Cluster {
    up: Option<Child>,
    dir: PathBuf,
    base: u16,
    nodes: u64,
}

fn base_port() -> u16 {
    // Each test runs in its own process: spread clusters apart by process id.
    20_000 + (std::process::id() % 90) as u16 * 300
}

impl Cluster {
    fn start(nodes: u64) -> Cluster {
        let dir = std::env::temp_dir().join(format!("synod-cluster-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let base = base_port();
        let mut cluster = Cluster {
            up: None,
            dir,
            base,
            nodes,
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

    /// The node that says it leads, once one does.
    fn leader(&self) -> u64 {
        let mut leader = None;
        wait_for(Duration::from_secs(20), || {
            leader = (1..=self.nodes).find(|id| {
                connect(self.resp(*id)).is_some_and(|mut conn| {
                    let info = conn.call(&["INFO", "replication"]);
                    matches!(info, Some(Reply::Bulk(Some(text)))
                        if String::from_utf8_lossy(&text).contains("role:master"))
                })
            });
            leader.is_some()
        });
        leader.expect("a leader")
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
    let mut cluster = Cluster::start(3);
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
    assert_eq!(conn.call(&["GET", "after-kill"]), Some(bulk("yes")));
    assert_eq!(conn.call(&["GET", "p500"]), Some(bulk("v500")));
    assert_eq!(conn.call(&["GET", "counter"]), Some(bulk("2")));
}

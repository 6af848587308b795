//! A one-node server in this process, fed bad input over real TCP: malformed RESP, a bulk
//! string over the limit, unknown commands, wrong arity, too many connections, an idle
//! connection. Each gets Redis's kind of answer, and the node and its other connections go on.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use synod_server::{Reply, ReplyParser, RespLimits, ServerConfig, run_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

struct Node {
    resp: SocketAddr,
    http: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    dir: std::path::PathBuf,
}

async fn start(extra: &str) -> Node {
    let dir = std::env::temp_dir().join(format!(
        "synod-bad-input-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (peer, resp, http) = (free_port(), free_port(), free_port());
    let text = format!(
        "node_id = 1\ndata_dir = {:?}\nlog = false\n{extra}\n[[members]]\nid = 1\n\
         peer = \"127.0.0.1:{peer}\"\nresp = \"127.0.0.1:{resp}\"\nhttp = \"127.0.0.1:{http}\"\n",
        dir.display().to_string()
    );
    let config = ServerConfig::parse(&text, Vec::new()).expect("config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_server(config, async move {
            let _ = stopped.await;
        })
        .await
        .map_err(|error| error.to_string())
    });
    let resp = SocketAddr::from(([127, 0, 0, 1], resp));
    let http = SocketAddr::from(([127, 0, 0, 1], http));
    // Wait until the node answers and has elected itself.
    for _ in 0..200 {
        if let Ok(mut conn) = Conn::open(resp).await
            && conn.call(&[b"SET", b"ready", b"1"]).await == Some(ok())
        {
            return Node {
                resp,
                http,
                stop: Some(stop),
                task,
                dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node did not start serving");
}

impl Node {
    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        let result = tokio::time::timeout(Duration::from_secs(20), &mut self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
        assert!(
            matches!(result, Ok(Ok(Ok(())))),
            "the node stops cleanly: {result:?}"
        );
    }
}

struct Conn {
    stream: TcpStream,
    parser: ReplyParser,
    buffer: BytesMut,
}

impl Conn {
    async fn open(address: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn {
            stream: TcpStream::connect(address).await?,
            parser: ReplyParser::new(RespLimits::default()),
            buffer: BytesMut::new(),
        })
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next reply, or `None` when the server closed the connection (or 10 s passed).
    async fn receive(&mut self) -> Option<Reply> {
        loop {
            if let Ok(Some(reply)) = self.parser.feed(&mut self.buffer) {
                return Some(reply);
            }
            let read = tokio::time::timeout(
                Duration::from_secs(10),
                self.stream.read_buf(&mut self.buffer),
            )
            .await;
            match read {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Option<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for arg in args {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        self.send_raw(&out).await;
        self.receive().await
    }
}

/// A connection that answers PING, retried while the server still counts closed ones.
async fn open_answering(address: SocketAddr) -> Conn {
    for _ in 0..100 {
        let mut conn = Conn::open(address).await.expect("connect");
        if conn.call(&[b"PING"]).await == Some(Reply::Simple("PONG".into())) {
            return conn;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no connection was accepted");
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn error_text(reply: Option<Reply>) -> String {
    match reply {
        Some(Reply::Error(text)) => text,
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_gets_redis_errors_and_nothing_else_is_disturbed() {
    // Checks protocol errors close only their connection after answering what came first,
    // a bulk over the limit is refused, unknown commands and wrong arity are errors, and a
    // bystander connection and the stored data are untouched throughout.
    let node = start("[limits]\nbulk_max_bytes = 1024").await;
    let mut bystander = Conn::open(node.resp).await.expect("connect");
    assert_eq!(bystander.call(&[b"SET", b"k", b"v"]).await, Some(ok()));

    let mut bad = Conn::open(node.resp).await.expect("connect");
    bad.send_raw(b"*1\r\n$4\r\nPING\r\n*1\r\n$x\r\n").await;
    assert_eq!(bad.receive().await, Some(Reply::Simple("PONG".into())));
    let text = error_text(bad.receive().await);
    assert!(text.starts_with("ERR Protocol error"), "{text}");
    assert_eq!(
        bad.receive().await,
        None,
        "a protocol error closes the connection"
    );

    let mut big = Conn::open(node.resp).await.expect("connect");
    big.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$100000\r\n")
        .await;
    let text = error_text(big.receive().await);
    assert!(
        text.contains("Protocol error: invalid bulk length"),
        "{text}"
    );

    let mut conn = Conn::open(node.resp).await.expect("connect");
    let text = error_text(conn.call(&[b"NOSUCH", b"a"]).await);
    assert!(text.starts_with("ERR unknown command 'NOSUCH'"), "{text}");
    let text = error_text(conn.call(&[b"GET"]).await);
    assert_eq!(text, "ERR wrong number of arguments for 'get' command");
    let text = error_text(conn.call(&[b"INCR", b"k"]).await);
    assert_eq!(text, "ERR value is not an integer or out of range");
    let text = error_text(conn.call(&[b"\xff\xfe", b"\x00"]).await);
    assert!(text.starts_with("ERR unknown command"), "{text}");
    assert_eq!(
        conn.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk(Some("v".into())))
    );
    assert_eq!(
        bystander.call(&[b"GET", b"k"]).await,
        Some(Reply::Bulk(Some("v".into())))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_and_the_idle_timeout_are_enforced() {
    // Checks a connection beyond max_connections is refused with Redis's error while the
    // others work, and an idle connection is closed after idle_timeout_secs.
    let node = start("[limits]\nmax_connections = 2\nidle_timeout_secs = 1").await;
    // The start-up probe's connection may still be counted until the server sees it close.
    let mut first = open_answering(node.resp).await;
    let second = open_answering(node.resp).await;
    let mut third = Conn::open(node.resp).await.expect("connect");
    let text = error_text(third.receive().await);
    assert_eq!(text, "ERR max number of clients reached");
    // Both stay idle past the timeout: the server closes them.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let text = error_text(first.receive().await);
    assert!(text.contains("idle timeout"), "{text}");
    assert_eq!(first.receive().await, None);
    drop(second);
    // Room again: a new connection works.
    open_answering(node.resp).await;
    node.stop().await;
}

/// One HTTP/1.1 request to the admin API; the status code and the body.
async fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).await.expect("connect HTTP");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_string());
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_faults_are_refused_unless_the_config_allows_them() {
    // Checks the fault-injection interface: a node configured without faults.clock refuses
    // clock faults naming the setting; one with it accepts a drift, reports it, keeps serving,
    // and refuses a bad body or an out-of-range drift.
    let node = start("").await;
    let (code, body) = http(
        node.http,
        "POST",
        "/faults/clock",
        r#"{"drift_ppm":100,"offset_ms":0}"#,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("faults.clock"), "{body}");
    node.stop().await;

    let node = start("[faults]\nclock = true").await;
    let (code, body) = http(
        node.http,
        "POST",
        "/faults/clock",
        r#"{"drift_ppm":300,"offset_ms":-40}"#,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(node.http, "GET", "/faults/clock", "").await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"drift_ppm":300,"offset_ms":-40}"#)
    );
    let (code, body) = http(node.http, "POST", "/faults/clock", r#"{"drift":1}"#).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(
        node.http,
        "POST",
        "/faults/clock",
        r#"{"drift_ppm":-2000000,"offset_ms":0}"#,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("drift_ppm"), "{body}");
    let mut conn = Conn::open(node.resp).await.expect("connect");
    assert_eq!(conn.call(&[b"SET", b"after", b"skew"]).await, Some(ok()));
    assert_eq!(
        conn.call(&[b"GET", b"after"]).await,
        Some(Reply::Bulk(Some("skew".into())))
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_faults_are_refused_unless_the_config_allows_them() {
    // Checks the slow-disk fault interface: a node without faults.disk refuses it naming
    // the setting; one with it takes a sync delay, reports it, still commits writes
    // (slowly), and refuses a bad body or a delay beyond the bound.
    let node = start("").await;
    let (code, body) = http(node.http, "POST", "/faults/disk", r#"{"sync_delay_ms":50}"#).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("faults.disk"), "{body}");
    node.stop().await;

    let node = start("[faults]\ndisk = true").await;
    let (code, body) = http(node.http, "POST", "/faults/disk", r#"{"sync_delay_ms":50}"#).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = http(node.http, "GET", "/faults/disk", "").await;
    assert_eq!(
        (code, body.as_str()),
        (200, r#"{"sync_delay_ms":50,"failing":false}"#)
    );
    let mut conn = Conn::open(node.resp).await.expect("connect");
    assert_eq!(conn.call(&[b"SET", b"slow", b"disk"]).await, Some(ok()));
    assert_eq!(
        conn.call(&[b"GET", b"slow"]).await,
        Some(Reply::Bulk(Some("disk".into())))
    );
    let (code, body) = http(node.http, "POST", "/faults/disk", r#"{"delay":1}"#).await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = http(
        node.http,
        "POST",
        "/faults/disk",
        r#"{"sync_delay_ms":60000}"#,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("sync_delay_ms"), "{body}");
    let (code, body) = http(node.http, "POST", "/faults/disk", r#"{"sync_delay_ms":0}"#).await;
    assert_eq!(code, 200, "{body}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_makes_the_node_read_only_until_it_recovers() {
    // Checks graceful degradation on a failing disk (every write and sync fails): the node
    // stays up, refuses writes with READONLY naming the disk, says so in SYNOD.STATUS (and
    // no longer says it leads),
    // still serves stale reads of acknowledged data, and takes writes again once the disk
    // heals, with nothing acknowledged lost.
    let node = start("[faults]\ndisk = true").await;
    let mut conn = Conn::open(node.resp).await.expect("connect");
    assert_eq!(conn.call(&[b"SET", b"kept", b"before"]).await, Some(ok()));
    let failing = r#"{"sync_delay_ms":0,"failing":true}"#;
    let (code, body) = http(node.http, "POST", "/faults/disk", failing).await;
    assert_eq!(code, 200, "{body}");
    // The first write after the failure may be the one that meets it (its outcome is then
    // unknown); the next ones are refused as read-only. Bounded: 100 tries.
    let mut refusal = None;
    for attempt in 0..100u32 {
        let value = attempt.to_string();
        match conn.call(&[b"SET", b"during", value.as_bytes()]).await {
            Some(Reply::Error(text)) if text.starts_with("READONLY") => {
                refusal = Some(text);
                break;
            }
            Some(Reply::Error(text)) => assert!(text.contains("disk"), "{text}"),
            other => assert_ne!(other, None, "the node stopped answering"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refusal = refusal.expect("writes were never refused as read-only");
    assert!(refusal.contains("disk"), "{refusal}");
    let status = format!("{:?}", conn.call(&[b"SYNOD.STATUS"]).await);
    assert!(status.contains("disk full or failing"), "{status}");
    // Its Raft is stopped: it no longer says it leads, so clients look for the leader.
    assert!(status.contains("\"starting\""), "{status}");
    assert_eq!(
        conn.call(&[b"SYNOD.READ-LEVEL", b"stale"]).await,
        Some(ok())
    );
    assert_eq!(
        conn.call(&[b"GET", b"kept"]).await,
        Some(Reply::Bulk(Some("before".into())))
    );
    let healed = r#"{"sync_delay_ms":0,"failing":false}"#;
    let (code, body) = http(node.http, "POST", "/faults/disk", healed).await;
    assert_eq!(code, 200, "{body}");
    // The replica retries its storage every few seconds: bounded by 15 s of tries.
    let mut written = false;
    for _ in 0..300 {
        if conn.call(&[b"SET", b"after", b"healed"]).await == Some(ok()) {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "writes did not resume after the disk healed");
    assert_eq!(
        conn.call(&[b"SYNOD.READ-LEVEL", b"linearizable"]).await,
        Some(ok())
    );
    for (key, value) in [(&b"kept"[..], "before"), (b"after", "healed")] {
        assert_eq!(
            conn.call(&[b"GET", key]).await,
            Some(Reply::Bulk(Some(value.into())))
        );
    }
    node.stop().await;
}

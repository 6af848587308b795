//! synod-client against a real `redis-server` on a loopback port (installed by scripts/setup).
//! Sessions, SYNOD.STATUS and SYNOD.CAS are synod-only: here they are checked as the requests
//! the client sends.

use std::net::TcpListener as StdTcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use synod_client::{Client, ClientConfig, ClientError, Connection, Reply, Retry, encode_command};

const TIMEOUT: Duration = Duration::from_secs(5);
/// How long redis-server may take to start accepting connections.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// A redis-server child process, stopped (by its pid) when dropped.
struct RedisServer {
    child: Child,
    address: String,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server: run scripts/setup to install it");
        let server = RedisServer {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        // Bounded by STARTUP_DEADLINE: waits for the port to accept and answer PING.
        loop {
            if let Ok(mut connection) = Connection::connect(&server.address, TIMEOUT).await
                && let Ok(Reply::Simple(pong)) = connection.call(&[b"PING"]).await
            {
                assert_eq!(pong, "PONG");
                return server;
            }
            assert!(
                started.elapsed() < STARTUP_DEADLINE,
                "redis-server did not answer on {} within {STARTUP_DEADLINE:?}",
                server.address
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid, then wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
}

#[tokio::test]
async fn connection_calls_and_pipelines_against_redis() {
    // Checks single calls, a 100-command pipeline in order, and an error reply returned as a
    // reply (the connection stays usable).
    let redis = RedisServer::start().await;
    let mut connection = Connection::connect(&redis.address, TIMEOUT).await.unwrap();
    let set = connection.call(&[b"SET", b"k", b"v"]).await.unwrap();
    assert_eq!(set, Reply::Simple("OK".into()));
    assert_eq!(connection.call(&[b"GET", b"k"]).await.unwrap(), bulk("v"));
    assert_eq!(
        connection.call(&[b"GET", b"absent"]).await.unwrap(),
        Reply::Bulk(None)
    );
    let commands: Vec<[&[u8]; 2]> = (0..100).map(|_| [&b"INCR"[..], b"counter"]).collect();
    let commands: Vec<&[&[u8]]> = commands.iter().map(|command| &command[..]).collect();
    let replies = connection.call_many(&commands).await.unwrap();
    let expected: Vec<Reply> = (1..=100).map(Reply::Integer).collect();
    assert_eq!(replies, expected);
    let wrong = connection.call(&[b"INCR", b"k"]).await.unwrap();
    assert!(
        matches!(&wrong, Reply::Error(message) if message.starts_with("ERR")),
        "{wrong:?}"
    );
    assert_eq!(connection.call(&[b"GET", b"k"]).await.unwrap(), bulk("v"));
}

#[tokio::test]
async fn client_operations_against_plain_redis() {
    // Checks get, set, del, incr, mget, mset and raw call through the cluster-aware client in
    // plain-Redis mode.
    let redis = RedisServer::start().await;
    let mut client = Client::new(&[&redis.address], ClientConfig::plain_redis()).unwrap();
    assert_eq!(client.get(b"a").await.unwrap(), None);
    client.set(b"a", b"1").await.unwrap();
    assert_eq!(client.get(b"a").await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(client.incr(b"a").await.unwrap(), 2);
    client.mset(&[(b"b", b"x"), (b"c", b"y")]).await.unwrap();
    let values = client.mget(&[b"a", b"b", b"c", b"d"]).await.unwrap();
    let values: Vec<Option<&[u8]>> = values.iter().map(|value| value.as_deref()).collect();
    assert_eq!(values, vec![Some(&b"2"[..]), Some(b"x"), Some(b"y"), None]);
    assert_eq!(client.del(&[b"a", b"b", b"absent"]).await.unwrap(), 2);
    let error = client.incr(b"c").await.unwrap_err();
    assert!(matches!(error, ClientError::Server { .. }), "{error}");
    let raw = client.call(&[b"NO.SUCH.COMMAND"]).await.unwrap();
    assert!(matches!(raw, Reply::Error(_)), "{raw:?}");
    assert_eq!(client.connected_address(), Some(redis.address.as_str()));
}

#[tokio::test]
async fn client_retries_a_read_and_refuses_to_replay_a_sessionless_write() {
    // Checks that after the server drops the client's connection a read is retried on a new
    // connection, while a write without a session reports an unknown outcome instead.
    let redis = RedisServer::start().await;
    let mut client = Client::new(&[&redis.address], ClientConfig::plain_redis()).unwrap();
    client.set(b"k", b"v").await.unwrap();
    let mut admin = Connection::connect(&redis.address, TIMEOUT).await.unwrap();
    let killer: [&[u8]; 5] = [b"CLIENT", b"KILL", b"TYPE", b"normal", b"SKIPME"];
    let killed = admin
        .call(&[killer.as_slice(), &[b"yes"]].concat())
        .await
        .unwrap();
    assert_eq!(killed, Reply::Integer(1));
    assert_eq!(client.get(b"k").await.unwrap().as_deref(), Some(&b"v"[..]));
    let killed = admin
        .call(&[killer.as_slice(), &[b"yes"]].concat())
        .await
        .unwrap();
    assert_eq!(killed, Reply::Integer(1));
    let error = client.set(b"k", b"w").await.unwrap_err();
    assert_eq!(error.retry(), Retry::Ambiguous, "{error}");
    client.set(b"k", b"w").await.unwrap();
}

#[tokio::test]
async fn client_opens_a_session_before_its_first_write() {
    // Checks that with sessions on the first write sends SYNOD.SESSION OPEN (which plain
    // Redis refuses, naming the command), and that reads need no session.
    let redis = RedisServer::start().await;
    let config = ClientConfig {
        discovery: false,
        ..ClientConfig::default()
    };
    let mut client = Client::new(&[&redis.address], config).unwrap();
    assert_eq!(client.get(b"k").await.unwrap(), None);
    let error = client.set(b"k", b"v").await.unwrap_err();
    let ClientError::Server { message, .. } = &error else {
        panic!("expected the server's refusal of SYNOD.SESSION, got {error}");
    };
    assert!(
        message.to_ascii_lowercase().contains("synod.session"),
        "{message}"
    );
    assert_eq!(client.session(), None);
}

#[tokio::test]
async fn discovery_against_plain_redis_reports_no_leader() {
    // Checks that discovery against a server without SYNOD.STATUS gives up with a message
    // naming the seed, after retrying until the deadline.
    let redis = RedisServer::start().await;
    let config = ClientConfig {
        operation_deadline: Duration::from_millis(300),
        request_timeout: Duration::from_millis(200),
        ..ClientConfig::default()
    };
    let mut client = Client::new(&[&redis.address], config).unwrap();
    let error = client.get(b"k").await.unwrap_err();
    let ClientError::GaveUp { attempts, last, .. } = &error else {
        panic!("expected GaveUp, got {error}");
    };
    assert!(*attempts >= 2, "{error}");
    assert!(matches!(**last, ClientError::NoLeader { .. }), "{error}");
    assert!(error.to_string().contains(&redis.address), "{error}");
}

#[tokio::test]
async fn a_silent_server_times_out_and_breaks_the_connection() {
    // Checks the per-call timeout against a listener that never answers, and that the
    // connection then refuses further calls.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepting = tokio::spawn(async move { listener.accept().await.map(|(socket, _)| socket) });
    let timeout = Duration::from_millis(100);
    let mut connection = Connection::connect(&address, timeout).await.unwrap();
    let error = connection.call(&[b"PING"]).await.unwrap_err();
    assert!(matches!(error, ClientError::Timeout { .. }), "{error}");
    assert_eq!(error.retry(), Retry::Ambiguous);
    let error = connection.call(&[b"PING"]).await.unwrap_err();
    assert!(matches!(error, ClientError::Broken { .. }), "{error}");
    drop(accepting.await);
}

#[test]
fn session_requests_encode_as_synod_expects() {
    // Checks the exact bytes of the synod-only requests the client sends.
    let cases: [(&[&[u8]], &[u8]); 4] = [
        (
            &[b"SYNOD.SESSION", b"OPEN"],
            b"*2\r\n$13\r\nSYNOD.SESSION\r\n$4\r\nOPEN\r\n",
        ),
        (
            &[b"SYNOD.SESSION", b"RESUME", b"7", b"12"],
            b"*4\r\n$13\r\nSYNOD.SESSION\r\n$6\r\nRESUME\r\n$1\r\n7\r\n$2\r\n12\r\n",
        ),
        (
            &[b"SYNOD.READ-LEVEL", b"lease"],
            b"*2\r\n$16\r\nSYNOD.READ-LEVEL\r\n$5\r\nlease\r\n",
        ),
        (
            &[b"SYNOD.CAS", b"k", b"a", b"b"],
            b"*4\r\n$9\r\nSYNOD.CAS\r\n$1\r\nk\r\n$1\r\na\r\n$1\r\nb\r\n",
        ),
    ];
    for (arguments, expected) in cases {
        let mut out = BytesMut::new();
        encode_command(arguments, &mut out);
        assert_eq!(&out[..], expected);
    }
}

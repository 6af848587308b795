//! The client's per-node circuit breakers against in-process fake nodes: a "dead" node that
//! accepts connections and never answers, and a live one that answers like a synod leader
//! (`SYNOD.STATUS`, `GET`). No real cluster is needed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use synod_client::{
    BreakerConfig, BreakerState, Client, ClientConfig, ClientError, NodeBreakerState, SlidingWindow,
};
use synod_server::{ProtocolVersion, Reply, RequestParser, RespLimits, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test may wait for a condition before it fails.
const CONDITION_DEADLINE: Duration = Duration::from_secs(20);
/// Bytes one fake connection buffers before it gives up on a client.
const REQUEST_BUFFER_MAX: usize = 64 * 1024;

/// The members every fake node reports: (node id, RESP address); node 2 leads.
struct Cluster {
    members: Vec<(u64, String)>,
    leader: u64,
}

/// A listener that counts the connections it accepts and, while `answering` is off, holds
/// them without ever replying (a hung process), else serves them as synod node `node`.
struct FakeNode {
    address: String,
    accepted: Arc<AtomicU64>,
    answering: Arc<AtomicBool>,
}

impl FakeNode {
    async fn bind() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        (listener, address)
    }

    fn start(listener: TcpListener, node: u64, cluster: Arc<Cluster>, answering: bool) -> Self {
        let address = listener.local_addr().expect("address").to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let answering = Arc::new(AtomicBool::new(answering));
        let (accepted_count, answering_now) = (accepted.clone(), answering.clone());
        // The tasks end with the test's runtime.
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted_count.fetch_add(1, Ordering::SeqCst);
                if answering_now.load(Ordering::SeqCst) {
                    tokio::spawn(serve(socket, node, cluster.clone()));
                } else {
                    tokio::spawn(hold(socket));
                }
            }
        });
        FakeNode {
            address,
            accepted,
            answering,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Reads and discards until the client hangs up: a node that accepts but never answers.
async fn hold(mut socket: TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(read) = socket.read(&mut sink).await {
        if read == 0 {
            return;
        }
    }
}

/// Answers RESP requests as synod node `node` would, for what the client sends here.
async fn serve(mut socket: TcpStream, node: u64, cluster: Arc<Cluster>) {
    let mut parser = RequestParser::new(RespLimits::default());
    let mut input = BytesMut::with_capacity(4096);
    let mut output = BytesMut::new();
    loop {
        match parser.feed(&mut input) {
            Ok(Some(command)) => {
                output.clear();
                encode(
                    &answer(&command, node, &cluster),
                    ProtocolVersion::Resp2,
                    &mut output,
                );
                if socket.write_all(&output).await.is_err() {
                    return;
                }
                continue;
            }
            Ok(None) if input.len() < REQUEST_BUFFER_MAX => {}
            Ok(None) | Err(_) => return,
        }
        match socket.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(Some(Bytes::copy_from_slice(text.as_bytes())))
}

fn answer(command: &[Bytes], node: u64, cluster: &Cluster) -> Reply {
    let name = command[0].to_ascii_uppercase();
    match &name[..] {
        b"SYNOD.STATUS" => status(node, cluster),
        b"GET" => Reply::Bulk(None),
        _ => Reply::Simple("OK".into()),
    }
}

/// A RESP2 `SYNOD.STATUS`: a flat array of field names and values.
fn status(node: u64, cluster: &Cluster) -> Reply {
    let address_of = |id: u64| {
        let member = cluster.members.iter().find(|(member, _)| *member == id);
        member
            .map(|(_, address)| address.clone())
            .unwrap_or_default()
    };
    let members = cluster
        .members
        .iter()
        .map(|(id, address)| {
            Reply::Array(Some(vec![
                bulk("node"),
                Reply::Integer(*id as i64),
                bulk("resp_address"),
                bulk(address),
            ]))
        })
        .collect();
    let role = if node == cluster.leader {
        "leader"
    } else {
        "follower"
    };
    Reply::Array(Some(vec![
        bulk("node"),
        Reply::Integer(node as i64),
        bulk("role"),
        bulk(role),
        bulk("term"),
        Reply::Integer(1),
        bulk("leader"),
        Reply::Integer(cluster.leader as i64),
        bulk("resp_address"),
        bulk(&address_of(node)),
        bulk("members"),
        Reply::Array(Some(members)),
    ]))
}

/// Short timeouts, quick retries, and a breaker that opens on two failures of at most four
/// calls, stays open `open_duration`, and closes after one good trial.
fn config(open_duration: Duration) -> ClientConfig {
    ClientConfig {
        request_timeout: Duration::from_millis(100),
        operation_deadline: Duration::from_secs(5),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        jitter_seed: Some(7),
        breaker: BreakerConfig {
            window: SlidingWindow::Count { calls_count: 4 },
            failure_rate_percent: 50,
            calls_min: 2,
            open_duration: synod_core::Duration::from_std(open_duration),
            half_open_trials_max: 1,
            half_open_duration_max: synod_core::Duration::from_secs(1),
            ..BreakerConfig::default()
        },
        ..ClientConfig::default()
    }
}

fn breaker_of(client: &Client, address: &str) -> NodeBreakerState {
    client
        .breaker_states()
        .into_iter()
        .find(|state| state.address == address)
        .unwrap_or_else(|| panic!("no breaker for {address}"))
}

/// One read, then a fresh connection for the next (so every operation runs discovery).
async fn read_once(client: &mut Client, live: &str) {
    let value = client.get(b"k").await.expect("the live node answers");
    assert_eq!(value, None);
    assert_eq!(client.connected_address(), Some(live));
    client.disconnect();
}

#[tokio::test]
async fn a_dead_nodes_breaker_opens_calls_go_to_the_live_node_and_it_closes_after_recovery() {
    // Checks the breaker's life for a hung node listed first: its timeouts open its breaker,
    // discovery then skips it (no new connection, a rejection counted) while every read goes
    // to the live leader, and once it answers again a trial after open_duration closes it.
    let (dead_listener, dead_address) = FakeNode::bind().await;
    let (live_listener, live_address) = FakeNode::bind().await;
    let cluster = Arc::new(Cluster {
        members: vec![(1, dead_address.clone()), (2, live_address.clone())],
        leader: 2,
    });
    let dead = FakeNode::start(dead_listener, 1, cluster.clone(), false);
    let _live = FakeNode::start(live_listener, 2, cluster, true);
    let seeds = [dead.address.as_str(), live_address.as_str()];
    let mut client = Client::new(&seeds, config(Duration::from_secs(1))).unwrap();

    // Bounded: calls_min (2) failures open the breaker, one per read.
    for _ in 0..4 {
        let states = client.breaker_states();
        let dead_state = states.iter().find(|state| state.address == dead_address);
        if dead_state.is_some_and(|state| state.state == BreakerState::Open) {
            break;
        }
        read_once(&mut client, &live_address).await;
    }
    let opened = breaker_of(&client, &dead_address);
    assert_eq!(opened.state, BreakerState::Open, "{opened}");
    assert_eq!(
        breaker_of(&client, &live_address).state,
        BreakerState::Closed
    );

    let mut skipped = 0;
    for _ in 0..3 {
        let before = breaker_of(&client, &dead_address);
        let accepted_before = dead.accepted();
        read_once(&mut client, &live_address).await;
        let after = breaker_of(&client, &dead_address);
        // Only while the breaker stayed open throughout (no trial began) is the skip certain.
        if after.stats.transitions_to_half_open == before.stats.transitions_to_half_open {
            assert_eq!(dead.accepted(), accepted_before, "{after}");
            assert!(
                after.stats.calls_rejected > before.stats.calls_rejected,
                "{after}"
            );
            skipped += 1;
        }
    }
    assert!(skipped >= 1, "the open breaker never skipped the dead node");

    dead.answering.store(true, Ordering::SeqCst);
    let accepted_before_recovery = dead.accepted();
    let started = Instant::now();
    // Waits on the condition "the dead node's breaker closed", with a deadline.
    loop {
        read_once(&mut client, &live_address).await;
        let state = breaker_of(&client, &dead_address);
        if state.state == BreakerState::Closed {
            assert!(state.stats.transitions_to_closed >= 1, "{state}");
            break;
        }
        assert!(
            started.elapsed() < CONDITION_DEADLINE,
            "the recovered node's breaker did not close: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead.accepted() > accepted_before_recovery);
}

#[tokio::test]
async fn when_every_breaker_is_open_the_least_recently_opened_node_is_still_tried() {
    // Checks that the client does not stall on breakers alone: with both seeds hung (plain
    // mode) both breakers open, and later attempts still connect to the one that opened
    // first, forced half-open, instead of failing with "breaker open" until it expires.
    let cluster = Arc::new(Cluster {
        members: Vec::new(),
        leader: 0,
    });
    let (first_listener, _) = FakeNode::bind().await;
    let (second_listener, _) = FakeNode::bind().await;
    let first = FakeNode::start(first_listener, 1, cluster.clone(), false);
    let second = FakeNode::start(second_listener, 2, cluster, false);
    let config = ClientConfig {
        discovery: false,
        sessions: false,
        operation_deadline: Duration::from_millis(1_500),
        ..config(Duration::from_secs(600))
    };
    let seeds = [first.address.as_str(), second.address.as_str()];
    let mut client = Client::new(&seeds, config).unwrap();
    let error = client.get(b"k").await.unwrap_err();
    let ClientError::GaveUp { last, .. } = &error else {
        panic!("expected GaveUp, got {error}");
    };
    assert!(
        matches!(**last, ClientError::Timeout { .. }),
        "the last attempt reached a node: {error}"
    );
    let states = client.breaker_states();
    assert_eq!(states.len(), 2);
    for state in &states {
        assert_eq!(state.state, BreakerState::Open, "{state}");
    }
    let forced: u64 = states
        .iter()
        .map(|state| state.stats.transitions_to_half_open)
        .sum();
    assert!(forced >= 1, "no breaker was forced half-open: {states:?}");
    assert!(first.accepted() + second.accepted() > 4, "{states:?}");
}

#[tokio::test]
async fn a_leader_named_by_a_live_node_is_tried_even_while_its_breaker_is_open() {
    // Checks discovery after a node that was down comes back as the leader: its breaker
    // opened while it hung, and with open_duration at ten minutes a client that waited out
    // the open state would get no leader; instead, because a live follower names it, the
    // client gives it a half-open trial at once, reads succeed and the breaker closes.
    let (follower_listener, follower_address) = FakeNode::bind().await;
    let (leader_listener, leader_address) = FakeNode::bind().await;
    let cluster = Arc::new(Cluster {
        members: vec![(1, follower_address.clone()), (2, leader_address.clone())],
        leader: 2,
    });
    let _follower = FakeNode::start(follower_listener, 1, cluster.clone(), true);
    let leader = FakeNode::start(leader_listener, 2, cluster, false);
    let seeds = [follower_address.as_str()];
    let mut client = Client::new(&seeds, config(Duration::from_secs(600))).unwrap();
    // Bounded: calls_min (2) failures open the breaker; each read fails at the hung leader.
    for _ in 0..4 {
        if client
            .breaker_states()
            .iter()
            .any(|state| state.address == leader_address && state.state == BreakerState::Open)
        {
            break;
        }
        let error = client.get(b"k").await.unwrap_err();
        assert!(!matches!(error, ClientError::BreakerOpen { .. }), "{error}");
    }
    assert_eq!(
        breaker_of(&client, &leader_address).state,
        BreakerState::Open
    );
    leader.answering.store(true, Ordering::SeqCst);
    let value = client
        .get(b"k")
        .await
        .expect("the recovered leader answers");
    assert_eq!(value, None);
    assert_eq!(client.connected_address(), Some(leader_address.as_str()));
    let state = breaker_of(&client, &leader_address);
    assert_eq!(state.state, BreakerState::Closed, "{state}");
    assert!(state.stats.transitions_to_half_open >= 1, "{state}");
}

//! The TCP transport between real nodes on loopback: delivery through bound ports, bad bytes
//! from a peer, reconnection after a restart, and full peer queues.

mod common;

use std::time::Duration as StdDuration;

use common::{
    MailMessage, Received, SendOutcome, TestNode, boot_mailman, send_mail, start_cluster,
    test_config, wait_until,
};
use synod_actor::NetSendError;
use synod_core::NodeId;
use synod_runtime::frame::{self, Frame, Hello};
use synod_runtime::{Direction, NodeRuntime, PeerErrorKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT_LIMIT: StdDuration = StdDuration::from_secs(10);

fn received_texts(node: &TestNode) -> Vec<(NodeId, String)> {
    node.handle
        .observations_of::<Received>()
        .into_iter()
        .map(|received| (received.from, received.text))
        .collect()
}

/// Starts `count` mailman nodes n1..=count on loopback.
fn mail_cluster(count: u64) -> (Vec<TestNode>, Vec<common::AddrSlot<MailMessage>>) {
    let mut slots = Vec::new();
    let configs = (1..=count).map(|id| test_config(NodeId(id))).collect();
    let nodes = start_cluster(configs, |_| {
        let (boot, slot) = boot_mailman();
        slots.push(slot);
        boot
    });
    (nodes, slots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_messages_to_bound_ports() {
    // Checks that every node's actor reaches every other node's actor (and its own node,
    // without TCP) through ctx.send_to_node, and that the peer counters count the frames.
    let (nodes, slots) = mail_cluster(3);
    for (sender, slot) in nodes.iter().zip(&slots) {
        for receiver in &nodes {
            let text = format!("from {} to {}", sender.node, receiver.node);
            send_mail(sender, slot, receiver.node, &text);
        }
    }
    for receiver in &nodes {
        wait_until("every node received three messages", WAIT_LIMIT, || {
            received_texts(receiver).len() == 3
        })
        .await;
        let mut texts = received_texts(receiver);
        texts.sort();
        let expected: Vec<(NodeId, String)> = nodes
            .iter()
            .map(|sender| {
                (
                    sender.node,
                    format!("from {} to {}", sender.node, receiver.node),
                )
            })
            .collect();
        assert_eq!(texts, expected);
    }
    let stats = nodes[0].handle.peer_stats();
    assert_eq!(
        stats.keys().copied().collect::<Vec<_>>(),
        vec![NodeId(2), NodeId(3)]
    );
    for peer in stats.values() {
        assert_eq!((peer.frames_sent_count, peer.frames_received_count), (1, 1));
        assert_eq!(peer.malformed_frames_count, 0);
    }
    for node in nodes {
        let report = node.stop().await;
        assert_eq!(report.services.local_sends_count, 1);
        assert!(
            report.network_errors.is_empty(),
            "{:?}",
            report.network_errors
        );
    }
}

/// Waits until the server closes `stream`: a read that ends or fails.
async fn assert_closed_by_server(stream: &mut TcpStream) {
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(WAIT_LIMIT, stream.read(&mut buffer)).await;
    match read.expect("the node closes the connection") {
        Ok(0) | Err(_) => {}
        Ok(count) => panic!("the node wrote {count} bytes to a peer connection"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_connection_and_the_error_names_it() {
    // Checks that bytes that are not a hello close the connection, with an error naming the
    // remote address, and that the node keeps delivering messages from a good peer.
    let (nodes, slots) = mail_cluster(2);
    let mut garbage = TcpStream::connect(nodes[0].address()).await.unwrap();
    let garbage_address = garbage.local_addr().unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert_closed_by_server(&mut garbage).await;
    wait_until("the error is recorded", WAIT_LIMIT, || {
        !nodes[0].handle.network_errors().is_empty()
    })
    .await;
    let error = nodes[0].handle.network_errors()[0].error.clone();
    assert_eq!(error.direction, Direction::Incoming);
    assert_eq!(error.remote, garbage_address);
    assert_eq!(error.claimed_node, None);
    assert!(matches!(
        error.kind,
        PeerErrorKind::Frame(frame::FrameError::HelloLength { .. })
    ));
    let text = error.to_string();
    assert!(text.contains(&garbage_address.to_string()), "{text}");
    assert_eq!(
        nodes[0].handle.unidentified_stats().malformed_frames_count,
        1
    );
    send_mail(&nodes[1], &slots[1], NodeId(1), "still here");
    wait_until("the good peer's message arrives", WAIT_LIMIT, || {
        received_texts(&nodes[0]) == vec![(NodeId(2), "still here".to_string())]
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_checksum_after_a_valid_hello_names_the_claimed_node() {
    // Checks a connection that says hello as n2 and then sends a frame whose payload does
    // not match its checksum: it is closed, counted against n2, and the error names both
    // the remote address and the claimed node; the real n2 still gets through.
    let (nodes, slots) = mail_cluster(2);
    let mut impostor = TcpStream::connect(nodes[0].address()).await.unwrap();
    let impostor_address = impostor.local_addr().unwrap();
    let hello = Hello {
        from: NodeId(2),
        to: NodeId(1),
    };
    let mut bytes = bytes::BytesMut::new();
    bytes.extend_from_slice(&frame::encode_hello(hello));
    let bad = Frame {
        from: NodeId(2),
        port: common::MAIL_PORT,
        payload: bytes::Bytes::from_static(b"forged"),
    };
    frame::encode_frame(&bad, &mut bytes);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    impostor.write_all(&bytes).await.unwrap();
    assert_closed_by_server(&mut impostor).await;
    wait_until("the error is recorded", WAIT_LIMIT, || {
        !nodes[0].handle.network_errors().is_empty()
    })
    .await;
    let error = nodes[0].handle.network_errors()[0].error.clone();
    assert_eq!(
        (error.remote, error.claimed_node),
        (impostor_address, Some(NodeId(2)))
    );
    assert!(matches!(
        error.kind,
        PeerErrorKind::Frame(frame::FrameError::ChecksumMismatch { .. })
    ));
    assert!(error.to_string().contains("claims n2"), "{error}");
    assert_eq!(
        nodes[0].handle.peer_stats()[&NodeId(2)].malformed_frames_count,
        1
    );
    send_mail(&nodes[1], &slots[1], NodeId(1), "the real n2");
    wait_until("the real n2's message arrives", WAIT_LIMIT, || {
        received_texts(&nodes[0]) == vec![(NodeId(2), "the real n2".to_string())]
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_from_an_unknown_node_is_refused_with_the_reason() {
    // Checks that a hello claiming a node that is not in the peer list is refused, and the
    // logged reason names the claimed node.
    let (nodes, _slots) = mail_cluster(2);
    let mut stranger = TcpStream::connect(nodes[0].address()).await.unwrap();
    let hello = Hello {
        from: NodeId(99),
        to: NodeId(1),
    };
    stranger
        .write_all(&frame::encode_hello(hello))
        .await
        .unwrap();
    assert_closed_by_server(&mut stranger).await;
    wait_until("the refusal is recorded", WAIT_LIMIT, || {
        !nodes[0].handle.network_errors().is_empty()
    })
    .await;
    let error = nodes[0].handle.network_errors()[0].error.clone();
    let expected = PeerErrorKind::UnknownNode {
        claimed: NodeId(99),
    };
    assert_eq!(
        (error.claimed_node, error.kind),
        (Some(NodeId(99)), expected)
    );
    assert_eq!(
        nodes[0]
            .handle
            .unidentified_stats()
            .refused_connections_count,
        1
    );
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_receives_messages_again() {
    // Checks reconnection: n2 stops and starts again on the same address, and n1's sender
    // notices, dials again with backoff and delivers to the new n2.
    let (mut nodes, slots) = mail_cluster(2);
    send_mail(&nodes[0], &slots[0], NodeId(2), "before");
    wait_until("the first message arrives", WAIT_LIMIT, || {
        received_texts(&nodes[1]).len() == 1
    })
    .await;
    let old = nodes.pop().unwrap();
    let address = old.address();
    old.stop().await;
    let mut config = common::test_config(NodeId(2));
    config.listen_address = Some(address);
    config.peers.insert(NodeId(1), nodes[0].address());
    let (boot, _slot) = boot_mailman();
    let restarted = TestNode::spawn(NodeRuntime::new(config).unwrap(), boot);
    // Messages sent while n1 has not yet noticed the restart may be lost, as on any network,
    // so n1 keeps sending until one arrives.
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    let mut attempt = 0;
    while received_texts(&restarted).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no message reached the new n2"
        );
        attempt += 1;
        send_mail(&nodes[0], &slots[0], NodeId(2), &format!("after {attempt}"));
        let sent = tokio::time::Instant::now();
        wait_until("a short wait for delivery", WAIT_LIMIT, || {
            !received_texts(&restarted).is_empty() || sent.elapsed() > StdDuration::from_millis(50)
        })
        .await;
    }
    assert!(received_texts(&restarted)[0].1.starts_with("after"));
    let stats = nodes[0].handle.peer_stats()[&NodeId(2)];
    assert!(stats.reconnects_count >= 1, "{stats:?}");
    restarted.stop().await;
    nodes.pop().unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_to_an_unreachable_peer_fill_its_queue_and_are_refused() {
    // Checks that a peer queue never grows past its capacity: with the peer down, sends are
    // accepted until the queue is full, then refused with QueueFull and counted.
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_address = unused.local_addr().unwrap();
    drop(unused);
    let mut config = test_config(NodeId(1));
    config.peer_queue_capacity = 4;
    config.peers.insert(NodeId(2), dead_address);
    let (boot, slot) = boot_mailman();
    let node = TestNode::spawn(NodeRuntime::new(config).unwrap(), boot);
    for index in 0..20 {
        send_mail(&node, &slot, NodeId(2), &format!("m{index}"));
    }
    wait_until("every send has an outcome", WAIT_LIMIT, || {
        node.handle.observations_of::<SendOutcome>().len() == 20
    })
    .await;
    let outcomes = node.handle.observations_of::<SendOutcome>();
    let refused = outcomes
        .iter()
        .filter(|outcome| {
            matches!(
                outcome.result,
                Err(NetSendError::QueueFull {
                    node: NodeId(2),
                    capacity: 4
                })
            )
        })
        .count();
    let accepted = outcomes
        .iter()
        .filter(|outcome| outcome.result.is_ok())
        .count();
    // The sender task holds one frame while it dials, so the queue plus one are accepted.
    assert!((4..=5).contains(&accepted), "accepted {accepted}");
    assert_eq!(accepted + refused, 20);
    let stats = node.handle.peer_stats()[&NodeId(2)];
    assert_eq!(stats.queue_full_drops_count, refused as u64);
    send_mail(&node, &slot, NodeId(7), "nobody");
    wait_until("the unknown-node send has an outcome", WAIT_LIMIT, || {
        node.handle.observations_of::<SendOutcome>().len() == 21
    })
    .await;
    let last = node.handle.observations_of::<SendOutcome>().pop().unwrap();
    assert_eq!(
        last.result,
        Err(NetSendError::UnknownNode { node: NodeId(7) })
    );
    let report = node.stop().await;
    assert!(report.peers[&NodeId(2)].connect_failures_count >= 1);
}

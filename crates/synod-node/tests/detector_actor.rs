//! The failure-detector actor and membership view under hand-driven services: the exact
//! disk operations of the boot, heartbeats on the wire, suspicion reaching the view, and
//! recovery from disk errors through supervision.

use bytes::Bytes;
use synod_actor::testing::ManualServices;
use synod_actor::{DiskError, DiskOp, DiskReply, DiskRequestId, Inbound, System, SystemConfig};
use synod_core::{Duration, NodeId};
use synod_detector::DetectorConfig;
use synod_node::incarnation::{INCARNATION_FILE, READ_LEN, SLOT_STRIDE, encode_slot};
use synod_node::{
    DETECTOR_PORT, FailureDetectorActor, FailureDetectorConfig, Heartbeat, MembershipEvent,
    MembershipView, NodeBooted, boot_node,
};

fn config() -> FailureDetectorConfig {
    FailureDetectorConfig {
        members: vec![NodeId(1), NodeId(2), NodeId(3)],
        detector: DetectorConfig::default(),
    }
}

fn booted_node() -> (System, ManualServices) {
    let mut system = System::new(SystemConfig::new(NodeId(1)));
    let mut services = ManualServices::new(11);
    boot_node(&mut system, config()).expect("boot");
    services.settle(&mut system);
    (system, services)
}

/// Completes the oldest outstanding disk request with `result` and runs the system.
fn complete(
    system: &mut System,
    services: &mut ManualServices,
    result: Result<DiskReply, DiskError>,
) -> DiskOp {
    let (id, op): (DiskRequestId, DiskOp) = services.disk_requests.remove(0);
    system.complete_disk(id, result);
    services.settle(system);
    op
}

fn detector(system: &System) -> &FailureDetectorActor {
    let id = system.find("detector").expect("detector is running");
    system
        .actor::<FailureDetectorActor>(id)
        .expect("detector state")
}

#[test]
fn first_boot_writes_syncs_file_and_directory_before_heartbeating() {
    // Checks the exact boot sequence on an empty disk: read (not found), write slot 0 with
    // incarnation 1, sync the file, sync the directory, and only then heartbeat peers.
    let (mut system, mut services) = booted_node();
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Read {
            path: INCARNATION_FILE.to_string(),
            offset: 0,
            len: READ_LEN
        }
    );
    let not_found = DiskError::NotFound {
        op: "read",
        path: INCARNATION_FILE.to_string(),
    };
    complete(&mut system, &mut services, Err(not_found));
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Write {
            path: INCARNATION_FILE.to_string(),
            offset: 0,
            data: encode_slot(1)
        }
    );
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Sync {
            path: INCARNATION_FILE.to_string()
        }
    );
    assert!(
        services.sent.is_empty(),
        "no heartbeat before the incarnation is durable"
    );
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    assert_eq!(services.disk_requests[0].1, DiskOp::SyncDir);
    assert!(services.sent.is_empty());
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    let heartbeat = Heartbeat {
        incarnation: 1,
        sequence: 1,
    }
    .encode();
    let targets: Vec<(NodeId, Bytes)> = services
        .sent
        .iter()
        .map(|sent| (sent.to, sent.payload.clone()))
        .collect();
    assert_eq!(
        targets,
        vec![(NodeId(2), heartbeat.clone()), (NodeId(3), heartbeat)]
    );
    assert_eq!(
        services.observations_of::<NodeBooted>(),
        vec![&NodeBooted { incarnation: 1 }]
    );
    assert_eq!(detector(&system).incarnation(), Some(1));
}

#[test]
fn reboot_writes_the_next_incarnation_into_the_other_slot_and_syncs_the_directory() {
    // Checks a reboot over an existing file: incarnation 5 in slot 0 leads to 6 in slot 1,
    // and the directory is synced even though the file existed (an earlier failed boot may
    // have created it without making its directory entry durable).
    let (mut system, mut services) = booted_node();
    let mut file = encode_slot(5).to_vec();
    file.resize(READ_LEN as usize, 0);
    complete(
        &mut system,
        &mut services,
        Ok(DiskReply::Data(Bytes::from(file))),
    );
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Write {
            path: INCARNATION_FILE.to_string(),
            offset: SLOT_STRIDE,
            data: encode_slot(6)
        }
    );
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Sync {
            path: INCARNATION_FILE.to_string()
        }
    );
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    assert_eq!(services.disk_requests[0].1, DiskOp::SyncDir);
    assert_eq!(detector(&system).incarnation(), None);
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    assert!(services.disk_requests.is_empty());
    assert_eq!(detector(&system).incarnation(), Some(6));
}

#[test]
fn failed_sync_fails_the_actor_and_the_restart_starts_over_from_disk() {
    // Checks that a failed fsync is not retried: the detector fails, is restarted by its
    // supervisor after the backoff, and begins again with a fresh read of the file.
    let (mut system, mut services) = booted_node();
    let not_found = DiskError::NotFound {
        op: "read",
        path: INCARNATION_FILE.to_string(),
    };
    complete(&mut system, &mut services, Err(not_found));
    complete(&mut system, &mut services, Ok(DiskReply::Done));
    let failure = DiskError::Io {
        op: "sync",
        path: INCARNATION_FILE.to_string(),
        message: "input/output error".to_string(),
    };
    complete(&mut system, &mut services, Err(failure));
    assert!(services.disk_requests.is_empty());
    services.advance(&mut system, Duration::from_millis(20));
    assert_eq!(
        services.disk_requests[0].1,
        DiskOp::Read {
            path: INCARNATION_FILE.to_string(),
            offset: 0,
            len: READ_LEN
        }
    );
    let row = system
        .tree()
        .into_iter()
        .find(|row| row.name == "detector")
        .unwrap();
    assert_eq!(row.restarts_count, 1);
    // rest_for_one: the membership view, started after the detector, restarted with it.
    let row = system
        .tree()
        .into_iter()
        .find(|row| row.name == "membership")
        .unwrap();
    assert_eq!(row.restarts_count, 1);
}

fn running_node() -> (System, ManualServices) {
    let (mut system, mut services) = booted_node();
    let not_found = DiskError::NotFound {
        op: "read",
        path: INCARNATION_FILE.to_string(),
    };
    complete(&mut system, &mut services, Err(not_found));
    for _ in 0..3 {
        complete(&mut system, &mut services, Ok(DiskReply::Done));
    }
    (system, services)
}

fn heartbeat_from(node: u64, incarnation: u64) -> Inbound {
    Inbound {
        from: NodeId(node),
        port: DETECTOR_PORT,
        payload: Heartbeat {
            incarnation,
            sequence: 1,
        }
        .encode(),
    }
}

#[test]
fn silent_peer_is_suspected_and_the_view_learns_it_then_recovery_clears_it() {
    // Checks the whole path: heartbeats from n2 and n3, n3 falls silent, the detector
    // publishes a suspicion the membership view records, and n3's return clears it.
    let (mut system, mut services) = running_node();
    for _ in 0..20 {
        system.deliver(heartbeat_from(2, 1));
        system.deliver(heartbeat_from(3, 1));
        services.advance(&mut system, Duration::from_millis(100));
    }
    for _ in 0..10 {
        system.deliver(heartbeat_from(2, 1));
        services.advance(&mut system, Duration::from_millis(100));
    }
    let suspected: Vec<NodeId> = services
        .observations_of::<MembershipEvent>()
        .iter()
        .filter_map(|event| match event {
            MembershipEvent::Suspected { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(suspected, vec![NodeId(3)]);
    let view_id = system.find("membership").unwrap();
    let view = system.actor::<MembershipView>(view_id).unwrap();
    assert_eq!(
        view.suspected().iter().copied().collect::<Vec<_>>(),
        vec![NodeId(3)]
    );
    system.deliver(heartbeat_from(3, 1));
    services.settle(&mut system);
    let view = system.actor::<MembershipView>(view_id).unwrap();
    assert!(view.suspected().is_empty());
}

#[test]
fn malformed_and_self_addressed_heartbeats_are_counted_not_fatal() {
    // Checks that garbage from a peer is counted and dropped and the node keeps running.
    let (mut system, mut services) = running_node();
    system.deliver(Inbound {
        from: NodeId(2),
        port: DETECTOR_PORT,
        payload: Bytes::from_static(b"junk"),
    });
    system.deliver(heartbeat_from(1, 1));
    services.settle(&mut system);
    assert_eq!(detector(&system).status().malformed_count, 2);
    assert_eq!(system.stats().panics_count, 0);
    assert_eq!(detector(&system).incarnation(), Some(1));
}

#[test]
fn invalid_config_names_the_field() {
    // Checks configuration errors users would see.
    use synod_core::Validate;
    let mut duplicate = config();
    duplicate.members.push(NodeId(2));
    assert_eq!(
        duplicate.validate().unwrap_err().to_string(),
        "config: members lists n2 twice"
    );
    let mut bad = config();
    bad.detector.window_size = 0;
    assert_eq!(bad.validate().unwrap_err().field, "detector.window_size");
}

//! Real files through `ctx.disk`, and the data directory lock.

mod common;

use std::time::Duration as StdDuration;

use bytes::Bytes;
use common::{DiskScript, DiskStep, ScratchDir, TestNode, test_config, wait_until};
use synod_actor::{ChildSpec, DiskError, DiskOp, DiskReply};
use synod_core::NodeId;
use synod_runtime::{LOCK_FILE_NAME, NodeRuntime, RuntimeError};

fn name(text: &str) -> String {
    text.to_string()
}

fn write(path: &str, offset: u64, data: &'static [u8]) -> DiskOp {
    let (path, data) = (name(path), Bytes::from_static(data));
    DiskOp::Write { path, offset, data }
}

fn read(path: &str, offset: u64, len: u32) -> DiskOp {
    let path = name(path);
    DiskOp::Read { path, offset, len }
}

fn data(bytes: &'static [u8]) -> Result<DiskReply, DiskError> {
    Ok(DiskReply::Data(Bytes::from_static(bytes)))
}

/// The script the disk actor runs, each step with the result it must give.
fn script() -> Vec<(DiskOp, Result<DiskReply, DiskError>)> {
    let done = Ok(DiskReply::Done);
    let not_found = DiskError::NotFound {
        op: "read",
        path: name("b.log"),
    };
    let reserved = DiskError::InvalidPath {
        path: name(LOCK_FILE_NAME),
        reason: "reserved for the data directory's lock file",
    };
    let names = vec![name("a.tmp"), name("c.log")];
    vec![
        (write("b.log", 0, b"hello "), done.clone()),
        (write("b.log", 6, b"synod"), done.clone()),
        (
            DiskOp::Sync {
                path: name("b.log"),
            },
            done.clone(),
        ),
        (read("b.log", 0, 64), data(b"hello synod")),
        (
            DiskOp::Len {
                path: name("b.log"),
            },
            Ok(DiskReply::Len(11)),
        ),
        (
            DiskOp::SetLen {
                path: name("a.tmp"),
                len: 3,
            },
            Err(DiskError::NotFound {
                op: "set_len",
                path: name("a.tmp"),
            }),
        ),
        (write("a.tmp", 0, b"temporary"), done.clone()),
        (
            DiskOp::SetLen {
                path: name("a.tmp"),
                len: 3,
            },
            done.clone(),
        ),
        (
            DiskOp::Rename {
                from: name("b.log"),
                to: name("c.log"),
            },
            done.clone(),
        ),
        (DiskOp::SyncDir, done.clone()),
        (DiskOp::List, Ok(DiskReply::Names(names))),
        (read("b.log", 0, 1), Err(not_found)),
        (
            DiskOp::Remove {
                path: name("a.tmp"),
            },
            done,
        ),
        (read("c.log", 6, 100), data(b"synod")),
        (write(LOCK_FILE_NAME, 0, b""), Err(reserved)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_writes_syncs_renames_and_reads_back_real_files() {
    // Checks every disk operation on a real directory through an actor: the bytes read back
    // are the bytes written, listings are sorted and hide the lock file, and missing files
    // and reserved names give the named errors; a stopped node releases the directory.
    let scratch = ScratchDir::new("disk-script");
    let mut config = test_config(NodeId(1));
    config.listen_address = None;
    config.data_dir = Some(scratch.path.clone());
    let (steps, expected): (Vec<DiskOp>, Vec<_>) = script().into_iter().unzip();
    let steps_count = steps.len();
    let config_again = config.clone();
    let boot = move |system: &mut synod_actor::System| {
        let spec = ChildSpec::new("disk-script", move || DiskScript {
            steps: steps.clone(),
            next: 0,
        });
        system.spawn(spec).expect("spawn the disk script");
    };
    let node = TestNode::spawn(NodeRuntime::new(config).unwrap(), boot);
    wait_until("every step completed", StdDuration::from_secs(10), || {
        node.handle.observations_of::<DiskStep>().len() == steps_count
    })
    .await;
    let results: Vec<_> = node
        .handle
        .observations_of::<DiskStep>()
        .into_iter()
        .map(|step| step.result)
        .collect();
    assert_eq!(results, expected);
    let on_disk = std::fs::read(scratch.path.join("c.log")).unwrap();
    assert_eq!(on_disk, b"hello synod");
    let report = node.stop().await;
    // "hello synod" (11 bytes) and "temporary" (9 bytes).
    assert_eq!(report.disk.bytes_written_count, 20);
    assert_eq!(report.disk.syncs_count, 2);
    NodeRuntime::new(config_again).expect("a stopped node has released its data directory");
}

#[test]
fn a_second_runtime_on_the_same_data_dir_is_refused() {
    // Checks the lock: while one runtime holds a data directory, another is refused with an
    // error that names the directory; once the first is gone the directory is free again.
    let scratch = ScratchDir::new("lock");
    let mut config = test_config(NodeId(1));
    config.listen_address = None;
    config.data_dir = Some(scratch.path.clone());
    let first = NodeRuntime::new(config.clone()).expect("the first runtime takes the lock");
    let second = NodeRuntime::new(config.clone());
    match second {
        Err(RuntimeError::DataDirectoryLocked { dir, .. }) => assert_eq!(dir, scratch.path),
        other => panic!("expected a lock refusal, got {other:?}"),
    }
    let text = NodeRuntime::new(config.clone()).unwrap_err().to_string();
    assert!(text.contains(&scratch.path.display().to_string()), "{text}");
    drop(first);
    NodeRuntime::new(config).expect("the lock is free after the first runtime is gone");
}

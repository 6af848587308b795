//! Named limits shared across crates. Every queue, buffer and batch in synod is bounded by one
//! of these or by a validated configuration field derived from them.

/// The largest payload one network frame may carry. Larger frames are refused as malformed.
pub const FRAME_PAYLOAD_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Default capacity of an actor mailbox.
pub const MAILBOX_CAPACITY_DEFAULT: usize = 4_096;
/// The largest mailbox an actor may declare.
pub const MAILBOX_CAPACITY_MAX: usize = 1 << 20;
/// The most children one actor may supervise.
pub const CHILDREN_COUNT_MAX: usize = 1_024;
/// The most actors one node's system may hold.
pub const ACTORS_COUNT_MAX: usize = 65_536;
/// The most timers one node may have pending at once.
pub const TIMERS_COUNT_MAX: usize = 1 << 20;
/// The most nodes a cluster may have.
pub const NODES_COUNT_MAX: usize = 64;
/// Default bound on messages queued for one peer connection.
pub const PEER_QUEUE_CAPACITY_DEFAULT: usize = 8_192;
/// The most disk operations one node may have outstanding.
pub const DISK_REQUESTS_COUNT_MAX: usize = 65_536;
/// The largest single disk read or write.
pub const DISK_IO_SIZE_MAX: usize = 64 * 1024 * 1024;

const _: () = assert!(MAILBOX_CAPACITY_DEFAULT <= MAILBOX_CAPACITY_MAX);
const _: () = assert!(PEER_QUEUE_CAPACITY_DEFAULT > 0);

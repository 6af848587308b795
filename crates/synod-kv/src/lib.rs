//! synod-kv: the replicated key-value state machine that committed Raft entries are applied
//! to.
//!
//! A [`KvStore`] holds a multi-version key space (every write entry gets the next store-wide
//! revision; reads can ask for an older revision until it is compacted) and a table of
//! client sessions that makes a retried command take effect at most once and get the same
//! reply. It is a pure library: no IO, no clock (time is the leader's timestamp carried in
//! each entry), no hash-map iteration, so every replica that applies the same entries holds
//! the same state, which [`KvStore::digest`] lets a simulator check.
//!
//! The driver applies committed entries in log order and answers the waiting client:
//!
//! ```
//! use synod_core::{LogIndex, Term};
//! use synod_kv::{ApplyContext, Command, KvConfig, KvStore, Operation, PutCondition, Response};
//!
//! let mut store = KvStore::new(KvConfig::default()).unwrap();
//! let put = Command {
//!     session: None,
//!     op: Operation::Put {
//!         key: "greeting".into(),
//!         value: "hello".into(),
//!         condition: PutCondition::Always,
//!         return_previous: false,
//!     },
//! };
//! // For each committed entry, in log order (the payload is what the client proposed):
//! let ctx = ApplyContext { index: LogIndex(1), term: Term(1), time_ns: 5_000 };
//! let response = store.apply(ctx, &put.encode());
//! assert_eq!(response, Response::Put { revision: 1, written: true, previous: None });
//! // Reads that need not go through the log (ReadIndex, lease, stale) read directly:
//! assert_eq!(store.get(b"greeting", None).unwrap().unwrap().value, "hello");
//! ```
//!
//! See `docs/kv.md` for the state, the commands, the byte encodings and how sessions expire.

mod codec;
mod command;
mod config;
mod keyspace;
mod response;
mod session;
mod snapshot;
mod store;
mod value;

pub use codec::{DecodeError, DecodeProblem};
pub use command::{
    COMMAND_FORMAT_VERSION, Command, Compare, Operation, PutCondition, SessionRef, TxnOp,
};
pub use config::KvConfig;
pub use response::{
    CommandError, RESPONSE_FORMAT_VERSION, RangeEntry, ReadError, Response, TxnResult,
};
pub use session::{CachedReply, Session};
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC, SnapshotError};
pub use store::{ApplyContext, KvStore, RangePage, parse_integer};
pub use value::{INLINE_SIZE_MAX, VersionedValue};

//! synod-actor: the actor runtime every synod node is built of, independent of any executor.
//!
//! An [`Actor`] owns its state and handles one message at a time in a synchronous handler.
//! Through its [`Context`] it sends messages, sets and cancels timers, reads the node's
//! clocks, draws randomness, spawns and supervises children, and reaches the network and
//! disk. Mailboxes are bounded, each with a declared [`Overflow`] policy; system messages
//! (start, stop, child exits) jump the queue. Supervision follows Erlang/OTP: one-for-one,
//! one-for-all and rest-for-one strategies, restart intensity within a period, restart
//! backoff, ordered shutdown, and escalation to the parent when intensity is exceeded. A
//! panic in a handler is caught and handed to the supervisor; it never takes the process
//! down.
//!
//! A [`System`] holds one node's actors. Executors drive it:
//!
//! ```text
//! loop {
//!     wait for: a network arrival   -> system.deliver(inbound)
//!               a disk completion   -> system.complete_disk(id, result)
//!               system.next_deadline()
//!     system.run(&mut services, budget);   // fires due timers, then handles messages
//! }
//! ```
//!
//! The simulation executor (synod-sim) does this on virtual time for a whole cluster in one
//! thread; the tokio executor (synod-runtime) does it with real sockets, files and clocks.

mod actor;
mod context;
mod services;
mod system;
pub mod testing;

pub use actor::{
    Actor, ActorId, Addr, ChildSpec, ExitReason, Overflow, Restart, Strategy, SupervisorSpec,
};
pub use context::{BindError, Context, SendError, SpawnError};
pub use services::{
    DiskCompletion, DiskError, DiskOp, DiskReply, DiskRequestId, DiskSubmitError, Inbound,
    LOCK_FILE_NAME, NetSendError, Observation, Port, Services, validate_file_name,
};
pub use system::{
    ActorInfo, ActorState, DISPATCH_BATCH_DEFAULT, Delivery, PANIC_RECORDS_MAX, PanicRecord,
    System, SystemConfig, SystemStats, SystemStatus, TimerId,
};

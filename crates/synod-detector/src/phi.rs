//! The phi function, which lives in synod-core (`synod_core::phi`) so that synod-raft's leader
//! suspicion can share it without depending on another protocol crate. Re-exported here under
//! its old path.

pub use synod_core::phi::{DEVIATIONS_LIMIT, PHI_SATURATED, from_normal};

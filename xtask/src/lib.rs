//! Development tasks for synod, run as `cargo xtask <command>` (see `src/main.rs`).
//!
//! The crate is both a library and a binary: the binary is the command line, and the library
//! holds the tasks and the tidy checks so that `xtask/tests/tidy.rs` can run the tidy checks
//! as an ordinary test of the suite. xtask does IO and runs processes, so it lifts the
//! determinism bans of the root `clippy.toml` in its own `xtask/clippy.toml`.

use std::path::{Path, PathBuf};

pub mod tasks;
pub mod tidy;

/// The root of the synod workspace: the parent of the `xtask` directory.
pub fn workspace_root() -> PathBuf {
    let xtask_directory = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = xtask_directory
        .parent()
        .expect("xtask lives in a directory of the workspace");
    root.to_path_buf()
}

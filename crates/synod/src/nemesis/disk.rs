//! The disk fault: one node keeps its data on a small tmpfs of its own, which the harness
//! fills with a filler file (the disk is full) and empties again (healed). Mounting needs
//! root; without it the kind is skipped with a message. The mount is undone when its guard
//! is dropped, on every path out of the run (a lazy unmount if a process still holds it).
//!
//! A slow disk is not arranged: it would need a device mapper or a FUSE layer under the
//! node, which the harness does not set up.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// The tmpfs size: the WAL preallocates 64 MiB segments and prepares the next one ahead, so
/// two of them and the snapshot and hard-state files fit with room to spare.
pub const TMPFS_SIZE_MB: u64 = 192;
/// The filler is written in chunks of this size until the filesystem is full.
const FILLER_CHUNK_BYTES: usize = 1 << 20;
const FILLER_NAME: &str = "nemesis-filler";

/// Why disk faults cannot be arranged here, or `None` when they can (running as root).
pub fn unavailable_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // "Uid:\treal\teffective\tsaved\tfs"
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u64>().ok());
    match effective {
        Some(0) => None,
        Some(uid) => Some(format!(
            "mounting the small tmpfs a full disk needs takes root, and this runs as uid {uid}"
        )),
        None => Some("cannot tell the user id from /proc/self/status".into()),
    }
}

/// A tmpfs mounted by the harness, unmounted when dropped.
#[derive(Debug)]
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size_mb` MiB on `path` (created if missing).
    pub fn mount(path: &Path, size_mb: u64) -> anyhow::Result<TmpfsMount> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .status()
            .context("cannot run mount")?;
        if !status.success() {
            bail!(
                "mount -t tmpfs on {} failed ({status}): disk faults need root and a kernel \
                 that allows tmpfs mounts here; leave out the disk kind",
                path.display()
            );
        }
        Ok(TmpfsMount {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn filler_path(&self) -> PathBuf {
        self.path.join(FILLER_NAME)
    }

    /// Writes the filler until the filesystem is full; returns the bytes written.
    pub fn fill(&self) -> std::io::Result<u64> {
        let mut file = std::fs::File::create(self.filler_path())?;
        let chunk = vec![0u8; FILLER_CHUNK_BYTES];
        let mut written = 0u64;
        // Bounded: the filesystem holds at most TMPFS_SIZE_MB chunks.
        for _ in 0..=TMPFS_SIZE_MB {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(count) => written += count as u64,
                Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }

    /// Removes the filler (no error when there is none).
    pub fn empty(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.filler_path()) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if unmounted {
            return;
        }
        // A process still has files open there: detach now, freed when it lets go.
        let detached = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status()
            .is_ok_and(|status| status.success());
        if !detached {
            eprintln!(
                "nemesis: cannot unmount the tmpfs on {}; run `umount -l {}`",
                self.path.display(),
                self.path.display()
            );
        }
    }
}

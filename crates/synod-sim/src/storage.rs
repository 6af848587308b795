//! The simulated disk as a [`synod_wal::Storage`], so storage code can be driven directly
//! against the same fault model the simulator applies to whole clusters: live and durable
//! bytes, torn writes at crash, fsync failures with fsyncgate semantics, latent bit flips.

use bytes::Bytes;
use synod_core::Prng;
use synod_core::disk::{DiskError, DiskOp, DiskReply};
use synod_wal::Storage;

use crate::disk::SimDisk;

/// A [`SimDisk`] and the PRNG its faults draw from, seen through the `Storage` trait.
pub struct SimStorage<'a> {
    pub disk: &'a mut SimDisk,
    pub prng: &'a mut Prng,
}

impl SimStorage<'_> {
    fn run(&mut self, op: DiskOp) -> Result<DiskReply, DiskError> {
        self.disk.execute(&op, self.prng)
    }

    fn done(&mut self, op: DiskOp) -> Result<(), DiskError> {
        let kind = op.kind();
        match self.run(op)? {
            DiskReply::Done => Ok(()),
            other => Err(unexpected(kind, &other)),
        }
    }
}

fn unexpected(kind: &'static str, reply: &DiskReply) -> DiskError {
    DiskError::Io {
        op: kind,
        path: String::new(),
        message: format!(
            "the simulated disk answered {reply:?}, which this operation never returns"
        ),
    }
}

impl Storage for SimStorage<'_> {
    fn read(&mut self, path: &str, offset: u64, len: u32) -> Result<Bytes, DiskError> {
        match self.run(DiskOp::Read {
            path: path.to_string(),
            offset,
            len,
        })? {
            DiskReply::Data(data) => Ok(data),
            other => Err(unexpected("read", &other)),
        }
    }

    fn write(&mut self, path: &str, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        let data = Bytes::copy_from_slice(data);
        self.done(DiskOp::Write {
            path: path.to_string(),
            offset,
            data,
        })
    }

    fn sync(&mut self, path: &str) -> Result<(), DiskError> {
        self.done(DiskOp::Sync {
            path: path.to_string(),
        })
    }

    fn set_len(&mut self, path: &str, len: u64) -> Result<(), DiskError> {
        self.done(DiskOp::SetLen {
            path: path.to_string(),
            len,
        })
    }

    fn len(&mut self, path: &str) -> Result<u64, DiskError> {
        match self.run(DiskOp::Len {
            path: path.to_string(),
        })? {
            DiskReply::Len(len) => Ok(len),
            other => Err(unexpected("len", &other)),
        }
    }

    fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        self.done(DiskOp::Remove {
            path: path.to_string(),
        })
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        self.done(DiskOp::Rename {
            from: from.to_string(),
            to: to.to_string(),
        })
    }

    fn sync_dir(&mut self) -> Result<(), DiskError> {
        self.done(DiskOp::SyncDir)
    }

    fn list(&mut self) -> Result<Vec<String>, DiskError> {
        match self.run(DiskOp::List)? {
            DiskReply::Names(names) => Ok(names),
            other => Err(unexpected("list", &other)),
        }
    }
}

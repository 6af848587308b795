//! The WAL's named limits, validated together.

use synod_core::config::check_range;
use synod_core::limits::DISK_IO_SIZE_MAX;
use synod_core::{ConfigError, Duration, Validate};

use crate::record::{
    BATCH_RECORDS_COUNT_MAX, SEGMENT_HEADER_SIZE, TRUNCATE_RECORD_SIZE, record_size,
};

/// The smallest segment accepted.
pub const SEGMENT_SIZE_MIN: u64 = 4_096;
/// Segments are a whole number of these (a sector on every current drive).
pub const SEGMENT_SIZE_GRANULE: u64 = 4_096;
/// The default segment size.
pub const SEGMENT_SIZE_DEFAULT: u64 = 64 << 20;
/// By default the spare segment is prepared once the active one is half full.
pub const SPARE_PREPARE_AT_PERCENT_DEFAULT: u32 = 50;
/// The longest time a small batch may be held back for more appends.
pub const BATCH_WAIT_LIMIT: Duration = Duration::from_secs(1);

const _: () = assert!(SEGMENT_SIZE_DEFAULT <= DISK_IO_SIZE_MAX as u64);

/// How the write-ahead log is laid out and batched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// The size every segment file is preallocated to, in bytes.
    pub segment_size: u64,
    /// The largest payload one record may carry, in bytes.
    pub record_size_max: u32,
    /// The most bytes one batch (one write and one fdatasync) may hold.
    pub batch_size_max: u32,
    /// The most records one batch may hold.
    pub batch_records_max: u32,
    /// How long a small batch may wait for more appends when no batch is in flight.
    /// Zero issues it at once; appends still gather while a batch is in flight.
    pub batch_wait_max: Duration,
    /// The most encoded bytes waiting for a batch; appends beyond it are refused.
    pub pending_bytes_max: u64,
    /// The most bytes one `read_range` plan reads.
    pub read_size_max: u32,
    /// How full the active segment is, in percent, when the engine starts preparing the
    /// next segment file (the spare) in the background, one disk op between batches, so
    /// that rolling over does not pay the preallocation on the commit path. 0 turns the
    /// spare off: every segment is then created when the first batch that needs it comes.
    pub spare_prepare_at_percent: u32,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_size: SEGMENT_SIZE_DEFAULT,
            record_size_max: 1 << 20,
            batch_size_max: 4 << 20,
            batch_records_max: 16_384,
            batch_wait_max: Duration::ZERO,
            pending_bytes_max: 64 << 20,
            read_size_max: 4 << 20,
            spare_prepare_at_percent: SPARE_PREPARE_AT_PERCENT_DEFAULT,
        }
    }
}

impl Validate for WalConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let io_max = DISK_IO_SIZE_MAX as u64;
        check_range("segment_size", self.segment_size, SEGMENT_SIZE_MIN, io_max)?;
        if !self.segment_size.is_multiple_of(SEGMENT_SIZE_GRANULE) {
            let problem = format!(
                "({}) must be a multiple of {SEGMENT_SIZE_GRANULE}",
                self.segment_size
            );
            return Err(ConfigError::new("segment_size", problem));
        }
        let records_max = BATCH_RECORDS_COUNT_MAX as u32;
        check_range("batch_records_max", self.batch_records_max, 1, records_max)?;
        // A record of the largest size must fit a batch, and a full batch a fresh segment
        // together with its header and one truncate record.
        let room = self.segment_size - (SEGMENT_HEADER_SIZE + TRUNCATE_RECORD_SIZE) as u64;
        let batch_max = room.min(io_max) as u32;
        check_range("batch_size_max", self.batch_size_max, 64, batch_max)?;
        let record_max = self.batch_size_max - record_size(0) as u32;
        check_range("record_size_max", self.record_size_max, 1, record_max)?;
        let wait = self.batch_wait_max;
        check_range(
            "batch_wait_max",
            wait.as_nanos(),
            0,
            BATCH_WAIT_LIMIT.as_nanos(),
        )?;
        let pending_min = u64::from(self.batch_size_max);
        check_range(
            "pending_bytes_max",
            self.pending_bytes_max,
            pending_min,
            1 << 40,
        )?;
        let read_min = record_size(self.record_size_max as usize) as u32;
        check_range(
            "read_size_max",
            self.read_size_max,
            read_min,
            DISK_IO_SIZE_MAX as u32,
        )?;
        check_range(
            "spare_prepare_at_percent",
            self.spare_prepare_at_percent,
            0,
            100,
        )?;
        Ok(())
    }
}

impl WalConfig {
    /// A small configuration for tests: 64 KiB segments, 4 KiB batches.
    pub fn small_for_tests() -> WalConfig {
        WalConfig {
            segment_size: 64 << 10,
            record_size_max: 2_048,
            batch_size_max: 4_096,
            batch_records_max: 64,
            batch_wait_max: Duration::ZERO,
            pending_bytes_max: 1 << 20,
            read_size_max: 16 << 10,
            spare_prepare_at_percent: SPARE_PREPARE_AT_PERCENT_DEFAULT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_test_config_are_valid_and_errors_name_the_field() {
        // Checks both shipped configurations validate and each broken field is named.
        assert_eq!(WalConfig::default().validate(), Ok(()));
        assert_eq!(WalConfig::small_for_tests().validate(), Ok(()));
        type Breaker = fn(&mut WalConfig);
        let broken: [(Breaker, &str); 7] = [
            (|c| c.segment_size = 5_000, "segment_size"),
            (|c| c.batch_size_max = 1 << 30, "batch_size_max"),
            (|c| c.record_size_max = 5_000, "record_size_max"),
            (|c| c.pending_bytes_max = 10, "pending_bytes_max"),
            (|c| c.batch_records_max = 0, "batch_records_max"),
            (
                |c| c.batch_wait_max = Duration::from_secs(5),
                "batch_wait_max",
            ),
            (
                |c| c.spare_prepare_at_percent = 101,
                "spare_prepare_at_percent",
            ),
        ];
        for (breaker, field) in broken {
            let mut config = WalConfig::small_for_tests();
            breaker(&mut config);
            let error = config.validate().unwrap_err();
            assert_eq!(error.field, field, "{error}");
        }
    }
}

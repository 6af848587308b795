//! The store's limits. Every replica of a group must use the same configuration: the limits
//! decide which commands are refused, and replies must be identical on every replica.

use synod_core::config::{ConfigError, Validate, check_range};
use synod_core::limits::FRAME_PAYLOAD_SIZE_MAX;

/// Bytes a range reply needs beyond its keys and values, per entry (lengths and revisions)
/// and in total (header), rounded up.
pub const RANGE_ENTRY_OVERHEAD_SIZE: usize = 64;

/// Limits of the key-value state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvConfig {
    /// The longest key, in bytes. Longer keys are refused.
    pub key_size_max: usize,
    /// The longest value, in bytes, also after an Append. Longer values are refused.
    pub value_size_max: usize,
    /// The most keys in one Delete, and the most compares and ops in each part of a Txn.
    pub txn_ops_max: usize,
    /// The most entries one Range returns.
    pub range_limit_max: usize,
    /// The most key and value bytes one Range returns; it stops early (with `more`) before
    /// exceeding this, but always returns at least one entry.
    pub range_size_max: usize,
    /// The most open sessions; registering one more evicts the least recently active.
    pub sessions_max: usize,
    /// A session with no command for longer than this (in log time) expires.
    pub session_timeout_ns: u64,
    /// The most unacknowledged replies one session may hold; beyond it commands are refused
    /// until the client acknowledges.
    pub session_replies_max: usize,
    /// The most expired sessions removed while applying one entry (the rest are removed by
    /// later entries, and an expired session is refused even before it is removed).
    pub session_expiry_sweep_max: usize,
    /// The most keys whose history is pruned while applying one entry after a Compact.
    pub compaction_keys_per_apply_max: usize,
}

impl Default for KvConfig {
    fn default() -> KvConfig {
        KvConfig {
            key_size_max: 4 * 1024,
            value_size_max: 1024 * 1024,
            txn_ops_max: 128,
            range_limit_max: 10_000,
            range_size_max: 4 * 1024 * 1024,
            sessions_max: 65_536,
            session_timeout_ns: 60 * 1_000_000_000,
            session_replies_max: 256,
            session_expiry_sweep_max: 64,
            compaction_keys_per_apply_max: 1_024,
        }
    }
}

/// The longest key any configuration may allow.
pub const KEY_SIZE_MAX_LIMIT: usize = 64 * 1024;
/// The longest value any configuration may allow: a Put of the longest key and value must
/// fit in one network frame with room to spare.
pub const VALUE_SIZE_MAX_LIMIT: usize = FRAME_PAYLOAD_SIZE_MAX / 2;
const _: () = assert!(KEY_SIZE_MAX_LIMIT + VALUE_SIZE_MAX_LIMIT < FRAME_PAYLOAD_SIZE_MAX);

const NANOS_PER_SECOND: u64 = 1_000_000_000;

impl Validate for KvConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check_range("key_size_max", self.key_size_max, 1, KEY_SIZE_MAX_LIMIT)?;
        // An Incr result (up to 20 bytes) must always fit.
        check_range(
            "value_size_max",
            self.value_size_max,
            64,
            VALUE_SIZE_MAX_LIMIT,
        )?;
        check_range("txn_ops_max", self.txn_ops_max, 1, 4_096)?;
        check_range("range_limit_max", self.range_limit_max, 1, 1_000_000)?;
        let entry_size_max = self.key_size_max + self.value_size_max + RANGE_ENTRY_OVERHEAD_SIZE;
        if self.range_size_max < entry_size_max {
            return Err(ConfigError::new(
                "range_size_max",
                format!(
                    "({}) must be at least key_size_max + value_size_max + {} ({}) so that \
                     one entry always fits",
                    self.range_size_max, RANGE_ENTRY_OVERHEAD_SIZE, entry_size_max
                ),
            ));
        }
        check_range(
            "range_size_max",
            self.range_size_max,
            entry_size_max,
            FRAME_PAYLOAD_SIZE_MAX,
        )?;
        check_range("sessions_max", self.sessions_max, 1, 1 << 22)?;
        check_range(
            "session_timeout_ns",
            self.session_timeout_ns,
            NANOS_PER_SECOND,
            7 * 24 * 3_600 * NANOS_PER_SECOND,
        )?;
        check_range("session_replies_max", self.session_replies_max, 1, 65_536)?;
        check_range(
            "session_expiry_sweep_max",
            self.session_expiry_sweep_max,
            1,
            1 << 20,
        )?;
        check_range(
            "compaction_keys_per_apply_max",
            self.compaction_keys_per_apply_max,
            1,
            1 << 20,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_errors_name_the_field() {
        // Checks the defaults validate and each kind of bad value names its field.
        KvConfig::default().validate().unwrap();
        let config = KvConfig {
            key_size_max: 0,
            ..KvConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "config: key_size_max (0) must be between 1 and 65536"
        );
        let config = KvConfig {
            range_size_max: 1_000,
            ..KvConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "config: range_size_max (1000) must be at least key_size_max + value_size_max + 64 \
             (1052736) so that one entry always fits"
        );
        let config = KvConfig {
            session_timeout_ns: 5,
            ..KvConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "session_timeout_ns");
        let config = KvConfig {
            session_replies_max: 0,
            ..KvConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().field, "session_replies_max");
    }
}

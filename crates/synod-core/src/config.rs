//! Configuration validation. Every configuration type implements [`Validate`]; errors name
//! the field (as a dotted path, the way it appears in the TOML file) and say what to do.

use thiserror::Error;

/// A configuration value that cannot be used, with the dotted name of the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("config: {field} {problem}")]
pub struct ConfigError {
    /// The dotted path of the offending field, e.g. `detector.threshold_phi`.
    pub field: String,
    /// What is wrong and what would be accepted.
    pub problem: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// Prefixes the field path, for nested sections (`detector` + `window_size`).
    pub fn within(mut self, section: &str) -> ConfigError {
        self.field = format!("{section}.{}", self.field);
        self
    }
}

/// A configuration that can check itself before use.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Checks `low <= value <= high`, naming the field in the error.
pub fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    low: T,
    high: T,
) -> Result<(), ConfigError> {
    if value < low || value > high {
        return Err(ConfigError::new(
            field,
            format!("({value}) must be between {low} and {high}"),
        ));
    }
    Ok(())
}

/// Checks `smaller < larger`, naming both fields in the error.
pub fn check_less<T: PartialOrd + std::fmt::Display>(
    smaller_field: &str,
    smaller: T,
    larger_field: &str,
    larger: T,
) -> Result<(), ConfigError> {
    if smaller >= larger {
        return Err(ConfigError::new(
            larger_field,
            format!("({larger}) must exceed {smaller_field} ({smaller})"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_field_and_the_fix() {
        // Checks the error text users see for range and ordering violations.
        let error = check_range("mailbox_capacity", 0, 1, 100).unwrap_err();
        assert_eq!(
            error.to_string(),
            "config: mailbox_capacity (0) must be between 1 and 100"
        );
        let error = check_less("heartbeat_ms", 100, "election_timeout_ms", 50).unwrap_err();
        assert_eq!(
            error.within("raft").to_string(),
            "config: raft.election_timeout_ms (50) must exceed heartbeat_ms (100)"
        );
        assert!(check_range("x", 5, 1, 10).is_ok());
    }
}

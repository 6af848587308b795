//! Identifier newtypes. Each is a distinct type so that a term can never be passed where a
//! log index is expected; all are plain `u64` underneath and encode as little-endian `u64`.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[derive(serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw value, for encoding.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0)
            }
        }
    };
}

id_newtype!(
    /// A node (one process, one replica set member) of a synod cluster.
    NodeId,
    "n"
);
id_newtype!(
    /// A client session, the key of the idempotent-receiver dedup table.
    ClientId,
    "c"
);
id_newtype!(
    /// A consensus term: the generation clock. Every leader-issued message carries one.
    Term,
    "t"
);
id_newtype!(
    /// A position in the replicated log. Index 0 means "before the first entry".
    LogIndex,
    "i"
);

impl Term {
    /// The term after this one. Overflow is a bug: 2^64 elections cannot happen.
    pub fn next(self) -> Term {
        Term(self.0.checked_add(1).expect("term overflow"))
    }
}

impl LogIndex {
    /// The index after this one.
    pub fn next(self) -> LogIndex {
        LogIndex(self.0.checked_add(1).expect("log index overflow"))
    }

    /// The index before this one, or `None` at zero.
    pub fn prev(self) -> Option<LogIndex> {
        self.0.checked_sub(1).map(LogIndex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_with_their_prefix_and_order_by_value() {
        // Checks the readable forms used in traces and that ordering follows the number.
        assert_eq!(NodeId(3).to_string(), "n3");
        assert_eq!(format!("{:?}", Term(7)), "t7");
        assert!(LogIndex(2) < LogIndex(10));
        assert_eq!(Term(4).next(), Term(5));
        assert_eq!(LogIndex(0).prev(), None);
        assert_eq!(LogIndex(5).prev(), Some(LogIndex(4)));
    }
}

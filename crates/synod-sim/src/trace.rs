//! The run's trace: a 64-bit hash of every event, and optionally a readable line per event.
//!
//! The hash folds each event's time, kind, node and a detail (a payload hash, a request id,
//! a count) into xxh3, so two runs of the same seed that differ anywhere end with different
//! hashes. Folding is a fixed-size buffer and one xxh3 call: no allocation. The readable
//! trace is written only when a sink is set, and callers format lines only then.

use std::fmt;
use std::io::Write;

use synod_core::{Instant, NodeId};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The trace of one run.
pub struct Trace {
    hash: u64,
    folds_count: u64,
    sink: Option<Box<dyn Write>>,
    /// The first write error; the run goes on, the report mentions it.
    write_error: Option<String>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trace")
            .field("hash", &format_args!("{:016x}", self.hash))
            .field("folds_count", &self.folds_count)
            .field("writing", &self.sink.is_some())
            .finish()
    }
}

impl Trace {
    pub fn new(seed: u64, sink: Option<Box<dyn Write>>) -> Trace {
        Trace {
            hash: xxh3_64_with_seed(&seed.to_le_bytes(), 0x5157_4e4f_4453),
            folds_count: 0,
            sink,
            write_error: None,
        }
    }

    /// Folds one event into the hash.
    pub fn fold(&mut self, time: Instant, kind: u8, node: u64, detail: u64) {
        let mut buffer = [0u8; 25];
        buffer[0..8].copy_from_slice(&time.as_nanos().to_le_bytes());
        buffer[8] = kind;
        buffer[9..17].copy_from_slice(&node.to_le_bytes());
        buffer[17..25].copy_from_slice(&detail.to_le_bytes());
        self.hash = xxh3_64_with_seed(&buffer, self.hash);
        self.folds_count += 1;
    }

    /// Whether readable lines are being written; callers format a line only if so.
    pub fn is_writing(&self) -> bool {
        self.sink.is_some()
    }

    /// Writes one readable line: virtual time, node (or `-`), what happened.
    pub fn line(&mut self, time: Instant, node: Option<NodeId>, what: fmt::Arguments<'_>) {
        let Some(sink) = self.sink.as_mut() else {
            return;
        };
        let nanos = time.as_nanos();
        let (seconds, fraction) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
        let result = match node {
            // NodeId's Display ignores width, so the number is padded instead.
            Some(node) => writeln!(sink, "{seconds:>6}.{fraction:09} n{:<3} {what}", node.0),
            None => writeln!(sink, "{seconds:>6}.{fraction:09} -    {what}"),
        };
        if let Err(error) = result {
            self.write_error.get_or_insert_with(|| error.to_string());
            self.sink = None;
        }
    }

    /// Flushes the readable trace; the first write error, if any.
    pub fn finish(&mut self) -> Option<String> {
        if let Some(sink) = self.sink.as_mut()
            && let Err(error) = sink.flush()
        {
            self.write_error.get_or_insert_with(|| error.to_string());
        }
        self.write_error.clone()
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn folds_count(&self) -> u64 {
        self.folds_count
    }
}

/// The xxh3 hash of a payload, for folding into the trace.
pub fn payload_hash(payload: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_field_and_on_order() {
        // Checks that changing any field of one event, or swapping two events, changes the
        // final hash, and that the same events give the same hash.
        let fold_all = |events: &[(u64, u8, u64, u64)]| {
            let mut trace = Trace::new(9, None);
            for (time, kind, node, detail) in events {
                trace.fold(Instant::from_nanos(*time), *kind, *node, *detail);
            }
            trace.hash()
        };
        let base = [(1, 1, 1, 1), (2, 2, 2, 2)];
        let hash = fold_all(&base);
        assert_eq!(hash, fold_all(&base));
        let variants = [
            [(9, 1, 1, 1), (2, 2, 2, 2)],
            [(1, 9, 1, 1), (2, 2, 2, 2)],
            [(1, 1, 9, 1), (2, 2, 2, 2)],
            [(1, 1, 1, 9), (2, 2, 2, 2)],
            [(2, 2, 2, 2), (1, 1, 1, 1)],
        ];
        for variant in variants {
            assert_ne!(fold_all(&variant), hash, "{variant:?}");
        }
    }

    #[test]
    fn lines_carry_time_node_and_text() {
        // Checks the readable trace format written to a sink.
        let buffer = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.borrow_mut().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut trace = Trace::new(1, Some(Box::new(Shared(buffer.clone()))));
        assert!(trace.is_writing());
        trace.line(
            Instant::from_nanos(1_500_000_000),
            Some(NodeId(3)),
            format_args!("crash"),
        );
        trace.line(Instant::from_nanos(7), None, format_args!("heal"));
        assert_eq!(trace.finish(), None);
        let text = String::from_utf8(buffer.borrow().clone()).unwrap();
        assert_eq!(
            text,
            "     1.500000000 n3   crash\n     0.000000007 -    heal\n"
        );
    }
}

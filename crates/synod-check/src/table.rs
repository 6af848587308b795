//! `WordSet`: a set of fixed-width rows of `u64` words, stored flat.
//!
//! The searches memoize configurations (which operations are linearized, the model state)
//! as a few words each. An open-addressing table of indices into one flat vector keeps
//! them compact (no allocation per row) and hashes them with a fixed function, so the
//! table behaves the same on every run. Rows are read back in insertion order; the hash
//! order is never observed, so it cannot affect a verdict.

/// A set of rows of `width` words each, in insertion order.
#[derive(Debug, Clone)]
pub struct WordSet {
    width: usize,
    words: Vec<u64>,
    /// Open-addressing slots: 0 is empty, otherwise row index + 1.
    slots: Vec<u32>,
    /// Per slot, the high half of its row's hash: most probes of a different row stop at it
    /// instead of comparing the rows.
    fingerprints: Vec<u32>,
    rows_count: usize,
}

/// The largest number of rows a set holds; the searches stop before it (a named limit).
pub const ROWS_COUNT_MAX: usize = (u32::MAX / 2) as usize;

impl WordSet {
    /// An empty set of rows `width` words wide (`width` may be 0: the set then holds at most
    /// one, empty, row).
    pub fn new(width: usize) -> WordSet {
        WordSet {
            width,
            words: Vec::new(),
            slots: vec![0; 16],
            fingerprints: vec![0; 16],
            rows_count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows_count
    }

    /// The row at `index` (insertion order).
    pub fn row(&self, index: usize) -> &[u64] {
        &self.words[index * self.width..(index + 1) * self.width]
    }

    /// Bytes held, for the memory limit.
    pub fn bytes(&self) -> usize {
        self.words.capacity() * 8 + self.slots.capacity() * 4 + self.fingerprints.capacity() * 4
    }

    /// Removes every row, keeping a table sized for about as many rows as it held.
    pub fn clear(&mut self) {
        let wanted = (self.rows_count * 2).next_power_of_two().max(16);
        if self.slots.len() > wanted * 4 {
            self.slots = vec![0; wanted];
            self.fingerprints = vec![0; wanted];
        } else {
            self.slots.fill(0);
        }
        self.words.clear();
        self.rows_count = 0;
    }

    /// Inserts `row`; returns false if it was already present.
    pub fn insert(&mut self, row: &[u64]) -> bool {
        assert_eq!(row.len(), self.width, "row width");
        if (self.rows_count + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let hash = hash_words(row);
        let fingerprint = (hash >> 32) as u32;
        let mut slot = hash as usize & mask;
        loop {
            let entry = self.slots[slot];
            if entry == 0 {
                assert!(self.rows_count < ROWS_COUNT_MAX, "WordSet is full");
                self.words.extend_from_slice(row);
                self.rows_count += 1;
                self.slots[slot] = u32::try_from(self.rows_count).expect("row count fits u32");
                self.fingerprints[slot] = fingerprint;
                return true;
            }
            if self.fingerprints[slot] == fingerprint && self.row(entry as usize - 1) == row {
                return false;
            }
            slot = (slot + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let capacity = self.slots.len() * 2;
        self.slots = vec![0; capacity];
        self.fingerprints = vec![0; capacity];
        let mask = capacity - 1;
        for index in 0..self.rows_count {
            let hash = hash_words(self.row(index));
            let mut slot = hash as usize & mask;
            while self.slots[slot] != 0 {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = u32::try_from(index + 1).expect("row count fits u32");
            self.fingerprints[slot] = (hash >> 32) as u32;
        }
    }
}

/// A fixed, fast hash of a row (multiply-xorshift per word, then a final mix).
fn hash_words(row: &[u64]) -> u64 {
    let mut hash: u64 = 0x9E37_79B9_7F4A_7C15;
    for &word in row {
        hash = (hash ^ word).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        hash ^= hash >> 31;
    }
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_duplicates_and_keeps_insertion_order() {
        // Checks set semantics across growth and that rows come back in insertion order.
        let mut set = WordSet::new(2);
        for value in 0..1000u64 {
            assert!(set.insert(&[value, value * 7]));
        }
        for value in 0..1000u64 {
            assert!(!set.insert(&[value, value * 7]));
        }
        assert_eq!(set.len(), 1000);
        assert_eq!(set.row(17), &[17, 119]);
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(set.insert(&[1, 7]));
    }
}

//! The engine's in-memory view of the log: entries after the last compaction point, which
//! of them are durable, committed and handed out for applying.
//!
//! The driver's storage holds the same entries durably; this copy lets the engine answer
//! term lookups and build append requests without IO.

use std::collections::VecDeque;

use synod_core::{LogIndex, Term};

use crate::types::{Entry, EntryPayload, Membership};

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The index and term of the entry just before `entries[0]` (the compaction point).
    base_index: LogIndex,
    base_term: Term,
    entries: VecDeque<Entry>,
    /// Bytes of `entries`, for flow control and the snapshot trigger.
    bytes: u64,
    /// Entries up to here are durable on this node, as they are now in memory.
    pub(crate) persisted: LogIndex,
    /// The highest index known to be committed.
    pub(crate) commit: LogIndex,
    /// The highest index handed to the driver for applying.
    pub(crate) applied: LogIndex,
}

/// Why entries could not be appended after `prev_index`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The first index the follower could possibly match from.
    pub(crate) hint_index: LogIndex,
    /// The follower's term at the refused position, when it has an entry there.
    pub(crate) hint_term: Option<Term>,
}

impl RaftLog {
    /// A log whose compaction point is (`base_index`, `base_term`), holding `entries`.
    pub(crate) fn new(base_index: LogIndex, base_term: Term, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog {
            base_index,
            base_term,
            entries: VecDeque::new(),
            bytes: 0,
            persisted: base_index,
            commit: base_index,
            applied: base_index,
        };
        for entry in entries.into_iter().filter(|entry| entry.index > base_index) {
            assert_eq!(
                entry.index,
                log.last_index().next(),
                "recovered log is not contiguous"
            );
            log.push(entry);
        }
        log.persisted = log.last_index();
        log
    }

    pub(crate) fn base_index(&self) -> LogIndex {
        self.base_index
    }

    pub(crate) fn first_index(&self) -> LogIndex {
        self.base_index.next()
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.base_index.0 + self.entries.len() as u64)
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries
            .back()
            .map_or(self.base_term, |entry| entry.term)
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The term of the entry at `index`: known for the compaction point and the entries
    /// after it, `None` below (compacted) or beyond the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.base_index {
            return None;
        }
        self.entries.get((index.0 - self.base_index.0 - 1) as usize)
    }

    /// Whether a candidate whose log ends at (`last_index`, `last_term`) is at least as up
    /// to date as this log (the election restriction).
    pub(crate) fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        assert_eq!(
            entry.index,
            self.last_index().next(),
            "log append out of order"
        );
        assert!(
            entry.term >= self.last_term(),
            "log terms must not decrease"
        );
        self.bytes += entry.size() as u64;
        self.entries.push_back(entry);
    }

    /// Entries in `[from, to]`, at most `count_max` of them and about `bytes_max` bytes (at
    /// least one entry when the range is not empty).
    pub(crate) fn slice(
        &self,
        from: LogIndex,
        to: LogIndex,
        count_max: usize,
        bytes_max: usize,
    ) -> Vec<Entry> {
        let mut slice = Vec::new();
        let mut bytes = 0;
        let mut index = from;
        while index <= to && slice.len() < count_max {
            let Some(entry) = self.entry(index) else {
                break;
            };
            bytes += entry.size();
            if bytes > bytes_max && !slice.is_empty() {
                break;
            }
            slice.push(entry.clone());
            index = index.next();
        }
        slice
    }

    /// Appends the leader's `entries` after `prev_index`, skipping those already present and
    /// truncating at the first conflicting one. Returns the index truncation started at (if
    /// any) and the entries that are new to this log.
    pub(crate) fn try_append(
        &mut self,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
    ) -> Result<(Option<LogIndex>, Vec<Entry>), Conflict> {
        if prev_index > self.last_index() {
            return Err(Conflict {
                hint_index: self.last_index().next(),
                hint_term: None,
            });
        }
        match self.term_at(prev_index) {
            Some(term) if term == prev_term => {}
            Some(term) => return Err(self.conflict_hint(prev_index, term)),
            // Below the compaction point: the caller trims committed entries first.
            None => unreachable!("try_append below the compaction point"),
        }
        let mut truncated_from = None;
        let mut fresh = Vec::new();
        for entry in entries {
            if fresh.is_empty() && truncated_from.is_none() {
                match self.term_at(entry.index) {
                    Some(term) if term == entry.term => continue,
                    Some(_) => {
                        self.truncate_from(entry.index);
                        truncated_from = Some(entry.index);
                    }
                    None => {}
                }
            }
            fresh.push(entry.clone());
            self.push(entry);
        }
        Ok((truncated_from, fresh))
    }

    /// The conflict hint for a refused append: the first index of the follower's
    /// conflicting term (but never at or below the commit, which cannot conflict).
    fn conflict_hint(&self, index: LogIndex, term: Term) -> Conflict {
        let floor = self.commit.next().max(self.first_index());
        let mut first = index;
        while first > floor {
            let before = LogIndex(first.0 - 1);
            if self.term_at(before) != Some(term) {
                break;
            }
            first = before;
        }
        Conflict {
            hint_index: first,
            hint_term: Some(term),
        }
    }

    /// The last index whose term is `term`, if the log has entries of that term.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let position = self.entries.iter().rposition(|entry| entry.term <= term)?;
        let entry = &self.entries[position];
        (entry.term == term).then_some(entry.index)
    }

    /// Drops the entries from `from` on. Committed entries never change: truncating them is
    /// a bug.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        assert!(from > self.commit, "truncating committed entry {from:?}");
        while self.last_index() >= from {
            let entry = self.entries.pop_back().expect("non-empty");
            self.bytes -= entry.size() as u64;
        }
        self.persisted = self.persisted.min(self.last_index());
    }

    /// Forgets entries up to `index` (which must be applied), keeping its term as the new
    /// compaction point.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        if index <= self.base_index {
            return;
        }
        assert!(index <= self.applied, "compacting unapplied entries");
        let term = self.term_at(index).expect("compaction point is in the log");
        while self.base_index < index {
            let entry = self.entries.pop_front().expect("entries up to the point");
            self.bytes -= entry.size() as u64;
            self.base_index = entry.index;
        }
        self.base_term = term;
    }

    /// Replaces the whole log with a snapshot's compaction point.
    pub(crate) fn reset_to_snapshot(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.bytes = 0;
        self.base_index = index;
        self.base_term = term;
        self.persisted = index;
        self.commit = self.commit.max(index);
        self.applied = index;
    }

    /// Forgets entries up to `index` because a snapshot covering them was installed, keeping
    /// the matching entries after it.
    pub(crate) fn discard_through(&mut self, index: LogIndex, term: Term) {
        while self.base_index < index {
            let entry = self
                .entries
                .pop_front()
                .expect("entries up to the snapshot");
            self.bytes -= entry.size() as u64;
            self.base_index = entry.index;
        }
        self.base_term = term;
        self.persisted = self.persisted.max(index);
        self.commit = self.commit.max(index);
        self.applied = self.applied.max(index);
    }

    /// The newest membership entry in the log at or before `index`, with its index.
    pub(crate) fn membership_at_or_before(
        &self,
        index: LogIndex,
    ) -> Option<(LogIndex, &Membership)> {
        self.entries
            .iter()
            .rev()
            .filter(|entry| entry.index <= index)
            .find_map(|entry| match &entry.payload {
                EntryPayload::Membership(membership) => Some((entry.index, membership)),
                _ => None,
            })
    }

    pub(crate) fn invariants(&self) {
        assert!(self.applied <= self.commit, "applied beyond commit");
        assert!(self.commit <= self.last_index().max(self.commit), "commit");
        assert!(
            self.persisted <= self.last_index(),
            "persisted beyond the end of the log"
        );
        assert!(
            self.applied >= self.base_index,
            "applied below the compaction point"
        );
        assert!(
            self.applied <= self.persisted.max(self.base_index),
            "applied non-durable entry"
        );
        if let Some(first) = self.entries.front() {
            assert_eq!(first.index, self.first_index(), "log base mismatch");
            assert!(
                first.term >= self.base_term,
                "log terms decrease at the base"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            term: Term(term),
            index: LogIndex(index),
            time_ns: 0,
            payload: EntryPayload::Noop,
        }
    }

    fn log_of(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| entry(i as u64 + 1, *t))
            .collect();
        RaftLog::new(LogIndex(0), Term(0), entries)
    }

    #[test]
    fn append_skips_matching_entries_and_truncates_at_the_first_conflict() {
        // Checks the follower rule: keep matching entries, cut at the first mismatch.
        let mut log = log_of(&[1, 1, 2, 2]);
        let (truncated, fresh) = log
            .try_append(
                LogIndex(1),
                Term(1),
                vec![entry(2, 1), entry(3, 3), entry(4, 3)],
            )
            .unwrap();
        assert_eq!(truncated, Some(LogIndex(3)));
        assert_eq!(fresh, vec![entry(3, 3), entry(4, 3)]);
        assert_eq!(log.last_term(), Term(3));
        assert_eq!(log.persisted, LogIndex(2));
    }

    #[test]
    fn append_beyond_the_end_hints_the_end() {
        // Checks a gap is refused with the follower's next index and no term.
        let mut log = log_of(&[1, 1]);
        let conflict = log.try_append(LogIndex(5), Term(1), vec![]).unwrap_err();
        assert_eq!(
            conflict,
            Conflict {
                hint_index: LogIndex(3),
                hint_term: None
            }
        );
    }

    #[test]
    fn conflicting_term_hints_its_first_index() {
        // Checks fast back-off: the hint is the first index of the follower's conflicting term.
        let mut log = log_of(&[1, 2, 2, 2, 2]);
        let conflict = log.try_append(LogIndex(5), Term(3), vec![]).unwrap_err();
        assert_eq!(
            conflict,
            Conflict {
                hint_index: LogIndex(2),
                hint_term: Some(Term(2))
            }
        );
        assert_eq!(log.last_index_of_term(Term(2)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(3)), None);
    }

    #[test]
    fn compaction_keeps_the_term_of_the_point() {
        // Checks compaction drops entries but still answers the term of the new base.
        let mut log = log_of(&[1, 1, 2, 3]);
        log.commit = LogIndex(3);
        log.applied = LogIndex(3);
        log.compact_to(LogIndex(3));
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(2)), None);
        assert_eq!(log.bytes(), entry(4, 3).size() as u64);
    }

    #[test]
    #[should_panic(expected = "truncating committed entry")]
    fn committed_entries_cannot_be_truncated() {
        // Checks the safety assertion that guards committed entries.
        let mut log = log_of(&[1, 1]);
        log.commit = LogIndex(2);
        log.truncate_from(LogIndex(2));
    }
}

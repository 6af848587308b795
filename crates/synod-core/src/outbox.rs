//! The caller-owned, bounded buffer a sans-IO protocol writes its effects into.
//!
//! A protocol's `step` pushes outputs (sends, persists, timers, replies) in the order the
//! driver must perform them. The capacity is a limit the protocol is designed around: if a
//! single step would exceed it, that is a bug in the protocol, so the push asserts.

/// Ordered, bounded effects of one or more protocol steps.
#[derive(Debug)]
pub struct Outbox<T> {
    items: Vec<T>,
    capacity: usize,
}

impl<T> Outbox<T> {
    pub fn new(capacity: usize) -> Outbox<T> {
        assert!(capacity > 0, "Outbox capacity must be positive");
        Outbox {
            items: Vec::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// Appends an effect. Exceeding the capacity is a protocol bug and panics.
    pub fn push(&mut self, item: T) {
        assert!(
            self.items.len() < self.capacity,
            "outbox overflow: a step produced more than {} effects",
            self.capacity
        );
        self.items.push(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Room left before the capacity is reached.
    pub fn remaining(&self) -> usize {
        self.capacity - self.items.len()
    }

    /// Takes the effects out in order, leaving the outbox empty and reusable.
    pub fn drain(&mut self) -> std::vec::Drain<'_, T> {
        self.items.drain(..)
    }

    pub fn as_slice(&self) -> &[T] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_preserves_order_and_empties() {
        // Checks effects come out in the order they were pushed and the outbox is reusable.
        let mut outbox = Outbox::new(3);
        outbox.push("persist");
        outbox.push("send");
        assert_eq!(outbox.remaining(), 1);
        assert_eq!(outbox.drain().collect::<Vec<_>>(), vec!["persist", "send"]);
        assert!(outbox.is_empty());
    }

    #[test]
    #[should_panic(expected = "outbox overflow")]
    fn overflow_is_a_bug() {
        // Checks that exceeding the designed capacity fails loudly instead of growing.
        let mut outbox = Outbox::new(1);
        outbox.push(1);
        outbox.push(2);
    }
}

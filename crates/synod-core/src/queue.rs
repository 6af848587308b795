//! A FIFO queue with a hard capacity. Pushing into a full queue hands the item back.

use std::collections::VecDeque;

/// The item that did not fit, returned to the caller so nothing is lost silently.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull<T>(pub T);

/// A FIFO queue that never grows past `capacity`.
#[derive(Debug, Clone)]
pub struct BoundedQueue<T> {
    items: VecDeque<T>,
    capacity: usize,
    high_water: usize,
}

impl<T> BoundedQueue<T> {
    /// A queue of at most `capacity` items. A zero capacity is a configuration bug.
    pub fn new(capacity: usize) -> BoundedQueue<T> {
        assert!(capacity > 0, "BoundedQueue capacity must be positive");
        BoundedQueue {
            items: VecDeque::new(),
            capacity,
            high_water: 0,
        }
    }

    pub fn push_back(&mut self, item: T) -> Result<(), QueueFull<T>> {
        if self.items.len() >= self.capacity {
            return Err(QueueFull(item));
        }
        self.items.push_back(item);
        self.high_water = self.high_water.max(self.items.len());
        Ok(())
    }

    /// Pushes at the front (for items that jump the queue); still bounded.
    pub fn push_front(&mut self, item: T) -> Result<(), QueueFull<T>> {
        if self.items.len() >= self.capacity {
            return Err(QueueFull(item));
        }
        self.items.push_front(item);
        self.high_water = self.high_water.max(self.items.len());
        Ok(())
    }

    pub fn pop_front(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    pub fn front(&self) -> Option<&T> {
        self.items.front()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.items.len() >= self.capacity
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The largest length the queue has reached.
    pub fn high_water(&self) -> usize {
        self.high_water
    }

    /// Removes every item, returning how many there were.
    pub fn clear(&mut self) -> usize {
        let count = self.items.len();
        self.items.clear();
        count
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.items.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_hands_the_item_back_and_tracks_high_water() {
        // Checks the bound: the item that does not fit comes back, order is FIFO, and the
        // high-water mark remembers the peak after draining.
        let mut queue = BoundedQueue::new(2);
        assert_eq!(queue.push_back(1), Ok(()));
        assert_eq!(queue.push_back(2), Ok(()));
        assert_eq!(queue.push_back(3), Err(QueueFull(3)));
        assert_eq!(queue.pop_front(), Some(1));
        assert_eq!(queue.push_front(0), Ok(()));
        assert_eq!(queue.drain().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(queue.high_water(), 2);
        assert!(queue.is_empty());
    }
}

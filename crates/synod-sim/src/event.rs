//! The event queue: everything that will happen in a run, ordered by (virtual time,
//! sequence number). The sequence number is the order of scheduling, so two events at the
//! same instant happen in the order they were scheduled and a run never depends on how a
//! heap breaks ties.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use bytes::Bytes;
use synod_actor::Port;
use synod_core::{Instant, NodeId};

/// The most events that may be pending at once. Every source of events is bounded (the
/// network by its in-flight bound per path, nodes by one wakeup and their disk queue), so
/// reaching this is a bug in the simulator.
pub const EVENTS_PENDING_MAX: usize = 1 << 22;
const _: () = assert!(EVENTS_PENDING_MAX <= u32::MAX as usize);

/// A message on the wire.
#[derive(Clone, Debug)]
pub struct Packet {
    pub from: NodeId,
    pub to: NodeId,
    pub port: Port,
    pub payload: Bytes,
    /// xxh3 of the payload, computed once at send for the trace hash.
    pub payload_hash: u64,
}

/// Something that happens at a point of virtual time.
#[derive(Clone, Debug)]
pub enum Event {
    /// A message reaches its receiver's side of the network.
    Arrive(Packet),
    /// A node's earliest timer may be due (or it has more work queued).
    Wakeup {
        node: usize,
        boot: u64,
    },
    /// The disk operation at the front of the node's queue completes.
    DiskComplete {
        node: usize,
        boot: u64,
    },
    /// The nemesis picks its next fault.
    Nemesis,
    /// A node that crashed (or halted) in `boot` comes back.
    Restart {
        node: usize,
        boot: u64,
    },
    /// A pause of a node ends.
    PauseEnd {
        node: usize,
        pause: u64,
    },
    /// A partition set by the nemesis heals, unless a newer one replaced it.
    Heal {
        epoch: u64,
    },
    /// One step of a swizzle-clog program.
    Clog {
        node: usize,
        program: u64,
    },
    Unclog {
        node: usize,
        program: u64,
    },
    /// The simulated time daemon disciplines the clocks that keep within the bound.
    ClockSync,
    /// The safety phase ends: heal a majority core and start judging liveness.
    LivenessStart,
    /// The liveness bound has passed.
    LivenessDeadline,
}

impl Event {
    /// A small code for the trace hash and the trace file.
    pub fn kind(&self) -> u8 {
        match self {
            Event::Arrive(_) => 1,
            Event::Wakeup { .. } => 2,
            Event::DiskComplete { .. } => 3,
            Event::Nemesis => 4,
            Event::Restart { .. } => 5,
            Event::PauseEnd { .. } => 6,
            Event::Heal { .. } => 7,
            Event::Clog { .. } => 8,
            Event::Unclog { .. } => 9,
            Event::ClockSync => 10,
            Event::LivenessStart => 11,
            Event::LivenessDeadline => 12,
        }
    }
}

/// The heap holds only the ordering key and a slot number: events themselves (a packet
/// is ~70 bytes) stay put in a slab, so sifting the heap moves 24 bytes per entry.
#[derive(Debug)]
struct Key {
    time: Instant,
    sequence: u64,
    slot: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.sequence) == (other.time, other.sequence)
    }
}

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    /// Reversed, so that the standard max-heap pops the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.sequence).cmp(&(self.time, self.sequence))
    }
}

/// Pending events of one run.
#[derive(Debug, Default)]
pub struct EventQueue {
    heap: BinaryHeap<Key>,
    slab: Vec<Option<Event>>,
    free_slots: Vec<u32>,
    sequence: u64,
}

impl EventQueue {
    pub fn new() -> EventQueue {
        EventQueue::default()
    }

    pub fn push(&mut self, time: Instant, event: Event) {
        assert!(
            self.heap.len() < EVENTS_PENDING_MAX,
            "event queue limit of {EVENTS_PENDING_MAX} reached: an event source is unbounded"
        );
        self.sequence += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                u32::try_from(self.slab.len() - 1).expect("bounded by EVENTS_PENDING_MAX")
            }
        };
        self.heap.push(Key {
            time,
            sequence: self.sequence,
            slot,
        });
    }

    /// The earliest event, with its time.
    pub fn pop(&mut self) -> Option<(Instant, Event)> {
        let key = self.heap.pop()?;
        let event = self.slab[key.slot as usize]
            .take()
            .expect("a queued slot holds its event");
        self.free_slots.push(key.slot);
        Some((key.time, event))
    }

    pub fn peek_time(&self) -> Option<Instant> {
        self.heap.peek().map(|key| key.time)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_by_time_then_by_scheduling_order() {
        // Checks the queue order: earlier time first, and events at the same time in the
        // order they were pushed.
        let mut queue = EventQueue::new();
        let at = Instant::from_nanos;
        queue.push(at(20), Event::Heal { epoch: 1 });
        queue.push(at(10), Event::Heal { epoch: 2 });
        queue.push(at(20), Event::Heal { epoch: 3 });
        queue.push(at(10), Event::Heal { epoch: 4 });
        queue.push(at(5), Event::Heal { epoch: 5 });
        let mut order = Vec::new();
        while let Some((time, Event::Heal { epoch })) = queue.pop() {
            order.push((time.as_nanos(), epoch));
        }
        assert_eq!(order, vec![(5, 5), (10, 2), (10, 4), (20, 1), (20, 3)]);
        assert!(queue.is_empty());
    }
}

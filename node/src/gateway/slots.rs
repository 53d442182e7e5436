//! Responses in flight, per client address and in all: a slow reader holding many CAR streams
//! open cannot take every slot. A slot is held from the start of a response to the end of its
//! body (or until the client goes away).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Debug)]
pub struct StreamSlots {
    per_client: u32,
    total: u32,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    all: u32,
    by_client: HashMap<IpAddr, u32>,
}

/// Why no slot was free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRefusal {
    Client,
    Total,
}

impl StreamSlots {
    pub fn new(per_client: u32, total: u32) -> Arc<Self> {
        Arc::new(Self {
            per_client,
            total,
            held: Mutex::new(Held::default()),
        })
    }

    /// A slot for `client`, or why none is free.
    pub fn take(self: &Arc<Self>, client: IpAddr) -> Result<StreamSlot, SlotRefusal> {
        let mut held = self.held.lock();
        if held.all >= self.total {
            return Err(SlotRefusal::Total);
        }
        let mine = held.by_client.entry(client).or_default();
        if *mine >= self.per_client {
            return Err(SlotRefusal::Client);
        }
        *mine += 1;
        held.all += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            client,
        })
    }

    #[cfg(test)]
    fn in_use(&self) -> (u32, usize) {
        let held = self.held.lock();
        (held.all, held.by_client.len())
    }
}

/// One response's slot, given back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    client: IpAddr,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock();
        held.all = held.all.saturating_sub(1);
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                // The table holds only clients with a response in flight.
                held.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_and_the_whole_gateway_have_a_ceiling() {
        let slots = StreamSlots::new(2, 3);
        let a = IpAddr::from([10, 0, 0, 1]);
        let b = IpAddr::from([10, 0, 0, 2]);
        let first = slots.take(a).expect("a's first");
        let second = slots.take(a).expect("a's second");
        assert_eq!(slots.take(a).err(), Some(SlotRefusal::Client));
        let third = slots.take(b).expect("b's first");
        assert_eq!(slots.take(b).err(), Some(SlotRefusal::Total));
        drop(first);
        assert!(slots.take(b).is_ok(), "a slot given back is free again");
        drop((second, third));
        assert_eq!(slots.in_use(), (0, 0), "nothing held, nobody remembered");
    }
}

//! The entities' slot ids by key hash: an open-addressing table with linear
//! probing. Each entry holds the low 32 bits of its key's hash beside the
//! slot id, so that
//! - a lookup reads a key (in its slot) only when those 32 bits match;
//! - growth and removal move entries without reading any key;
//! - the table line a key's lookup starts at is known from its hash alone,
//!   and can be prefetched before the lookup ([`Index::prefetch`]), and the
//!   likely slot id read before the slot is in cache ([`Index::candidate`]).
//!
//! The table doubles when more than 3/4 full; removal shifts the entries that
//! follow back (no tombstones), so lookups stay short however many entities
//! come and go.

/// An empty entry; a live one is `tag << 32 | (id + 1)`.
const EMPTY: u64 = 0;
const MIN_CAPACITY: usize = 16;

#[derive(Default)]
pub struct Index {
    /// A power of two long (or empty).
    entries: Box<[u64]>,
    len: usize,
}

/// The part of a hash an entry keeps (its low bits also pick the home entry).
fn tag(hash: u64) -> u32 {
    hash as u32
}

fn encode(tag: u32, id: u32) -> u64 {
    (u64::from(tag) << 32) | (u64::from(id) + 1)
}

fn id_of(entry: u64) -> u32 {
    (entry as u32).wrapping_sub(1)
}

fn tag_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

impl Index {
    /// Ids held.
    pub fn len(&self) -> usize {
        self.len
    }

    fn mask(&self) -> usize {
        self.entries.len().wrapping_sub(1)
    }

    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask()
    }

    /// Asks the CPU to load the table line a lookup of `hash` starts at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if !self.entries.is_empty() {
            super::prefetch(self.entries.get(self.home(tag(hash))));
        }
    }

    /// The first id whose entry matches `hash`, without comparing keys: the
    /// id [`Index::find`] most likely returns (for prefetching its slot).
    pub fn candidate(&self, hash: u64) -> Option<u32> {
        self.probe(hash)
            .find(|&e| tag_of(e) == tag(hash))
            .map(id_of)
    }

    /// The entries from `hash`'s home up to the first empty one.
    fn probe(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let start = self.home(tag(hash));
        let mask = self.mask();
        (0..self.entries.len())
            .map(move |k| self.entries[(start + k) & mask])
            .take_while(|&e| e != EMPTY)
    }

    /// The id stored under `hash` for which `is_key` holds.
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        self.probe(hash)
            .find(|&e| tag_of(e) == tag(hash) && is_key(id_of(e)))
            .map(id_of)
    }

    /// Stores `id` under `hash` (its key must not be stored yet).
    pub fn insert(&mut self, hash: u64, id: u32) {
        assert!(id < u32::MAX, "slot ids stay below u32::MAX");
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(encode(tag(hash), id));
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        let mask = self.mask();
        let mut i = self.home(tag_of(entry));
        while self.entries[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.entries[i] = entry;
    }

    fn grow(&mut self) {
        let capacity = (self.entries.len() * 2).max(MIN_CAPACITY);
        let old = std::mem::replace(&mut self.entries, vec![EMPTY; capacity].into_boxed_slice());
        for entry in old.iter().copied().filter(|&e| e != EMPTY) {
            self.place(entry);
        }
    }

    /// Removes `id`, stored under `hash`; false if it is not there.
    pub fn remove(&mut self, hash: u64, id: u32) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let mask = self.mask();
        let wanted = encode(tag(hash), id);
        let mut hole = self.home(tag(hash));
        loop {
            match self.entries[hole] {
                EMPTY => return false,
                e if e == wanted => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        // Shift back every following entry that may fill the hole (its home
        // is not between the hole and it), until an empty entry.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let e = self.entries[j];
            if e == EMPTY {
                break;
            }
            let home = self.home(tag_of(e));
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.entries[hole] = e;
                hole = j;
            }
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u8>().prop_map(Op::Insert),
            any::<u8>().prop_map(Op::Remove)
        ]
    }

    /// Keys' hashes, chosen so that many share their low 32 bits (long
    /// probes, wrap-around at the table's end, equal tags of different keys).
    fn hash_of(key: u8) -> u64 {
        (u64::from(key) << 40) | (u64::from(key % 3) * 15 + u64::from(key.is_multiple_of(7)))
    }

    proptest! {
        /// Inserts and removes of random keys agree with a `HashMap` after
        /// every step: every key's id is found, removed keys are not.
        #[test]
        fn agrees_with_a_hash_map(ops in proptest::collection::vec(op(), 0..600)) {
            let mut index = Index::default();
            let mut reference: HashMap<u8, u32> = HashMap::new();
            let mut next_id = 0u32;
            for op in ops {
                match op {
                    Op::Insert(k) if !reference.contains_key(&k) => {
                        index.insert(hash_of(k), next_id);
                        reference.insert(k, next_id);
                        next_id += 1;
                    }
                    Op::Insert(_) => {}
                    Op::Remove(k) => {
                        if let Some(id) = reference.remove(&k) {
                            prop_assert!(index.remove(hash_of(k), id));
                        }
                    }
                }
                prop_assert_eq!(index.len(), reference.len());
                let ids: HashMap<u32, u8> = reference.iter().map(|(k, id)| (*id, *k)).collect();
                for k in 0..=u8::MAX {
                    let found = index.find(hash_of(k), |id| ids.get(&id) == Some(&k));
                    prop_assert_eq!(found, reference.get(&k).copied());
                }
            }
        }
    }

    #[test]
    fn removing_what_is_not_there_changes_nothing() {
        let mut index = Index::default();
        assert!(!index.remove(7, 0));
        index.insert(7, 0);
        assert!(!index.remove(7, 1));
        assert!(!index.remove(8, 0));
        assert_eq!(index.find(7, |id| id == 0), Some(0));
        assert_eq!(index.candidate(7), Some(0));
        assert!(index.remove(7, 0));
        assert_eq!(index.find(7, |_| true), None);
    }
}

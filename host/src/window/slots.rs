//! A partition's entity slots, by id: storage that grows in fixed-size chunks.
//!
//! A single vector of a million entities' slots doubles by copying every one
//! of them (over 100 MB at once): processing stalls for the copy, and until the
//! old buffer is returned the process holds both. Chunks never move, so growth
//! allocates one chunk and copies nothing; an id is a chunk number and an index.

use std::ops::{Index, IndexMut};

/// Slots per chunk (a power of two: an id splits into chunk and index by shifts).
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

/// Values by dense `u32` id, appended at the end; ids stay valid for good.
pub struct Slots<T> {
    /// Full chunks, then the one being filled.
    chunks: Vec<Vec<T>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self { chunks: Vec::new() }
    }
}

impl<T> Slots<T> {
    /// Appends `value`; returns its id.
    pub fn push(&mut self, value: T) -> u32 {
        if self.chunks.last().is_none_or(|last| last.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let id = (self.chunks.len() - 1) * CHUNK;
        let last = self.chunks.last_mut().expect("a chunk with room");
        let id = id + last.len();
        last.push(value);
        u32::try_from(id).expect("fewer than 2^32 entities per partition")
    }

    /// The value of `id`, if pushed.
    pub fn get(&self, id: u32) -> Option<&T> {
        let id = id as usize;
        self.chunks.get(id >> CHUNK_BITS)?.get(id & (CHUNK - 1))
    }

    /// Every value, by id.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

impl<T> Index<u32> for Slots<T> {
    type Output = T;

    fn index(&self, id: u32) -> &T {
        let id = id as usize;
        &self.chunks[id >> CHUNK_BITS][id & (CHUNK - 1)]
    }
}

impl<T> IndexMut<u32> for Slots<T> {
    fn index_mut(&mut self, id: u32) -> &mut T {
        let id = id as usize;
        &mut self.chunks[id >> CHUNK_BITS][id & (CHUNK - 1)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_address_what_was_pushed_across_chunks() {
        let mut slots = Slots::default();
        let n = CHUNK * 3 + 5;
        for i in 0..n {
            assert_eq!(slots.push(i * 7), i as u32);
        }
        for i in 0..n {
            assert_eq!(slots[i as u32], i * 7);
            assert_eq!(slots.get(i as u32), Some(&(i * 7)));
        }
        assert_eq!(slots.get(n as u32), None);
        slots[CHUNK as u32] = 1;
        assert_eq!(slots[CHUNK as u32], 1);
        let all: Vec<usize> = slots.iter().copied().collect();
        assert_eq!(all.len(), n);
        assert_eq!(all[CHUNK], 1);
        assert_eq!(all[n - 1], (n - 1) * 7);
    }

    #[test]
    fn a_chunk_never_moves_as_slots_grow() {
        let mut slots = Slots::default();
        slots.push(0u64);
        let first: *const u64 = &slots[0];
        for i in 1..(CHUNK * 4) as u64 {
            slots.push(i);
        }
        assert_eq!(first, &slots[0] as *const u64);
    }
}

//! `DiffMemory`: records kept sorted and non-overlapping; a newer record cuts whatever older
//! records it overlaps (newest wins per block).

use std::collections::BTreeMap;

use crate::types::LBS;
use crate::wdiff::rec::{Body, DiffRec};

#[derive(Default)]
pub struct DiffMemory {
    map: BTreeMap<u64, DiffRec>,
    data_bytes: usize,
}

impl DiffMemory {
    pub fn new() -> DiffMemory {
        DiffMemory::default()
    }

    pub fn insert(&mut self, rec: DiffRec) {
        if rec.blocks == 0 {
            return;
        }
        let (addr, end) = (rec.addr, rec.end());
        for k in overlapping_keys(&self.map, addr, end, DiffRec::end) {
            let old = self.map.remove(&k).expect("key just listed");
            self.data_bytes -= data_len(&old);
            if old.addr < addr {
                self.put(old.slice(old.addr, addr));
            }
            if old.end() > end {
                self.put(old.slice(end, old.end()));
            }
        }
        self.put(rec);
    }

    fn put(&mut self, r: DiffRec) {
        self.data_bytes += data_len(&r);
        self.map.insert(r.addr, r);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of data held (ALLZERO and DISCARD hold none).
    pub fn data_bytes(&self) -> usize {
        self.data_bytes
    }

    /// Records overlapping `[start, end)` LB, in address order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &DiffRec> {
        let first = self
            .map
            .range(..=start)
            .next_back()
            .filter(|(_, r)| r.end() > start)
            .map_or(start, |(&k, _)| k);
        self.map.range(first..end).map(|(_, r)| r)
    }

    pub fn iter(&self) -> impl Iterator<Item = &DiffRec> {
        self.map.values()
    }

    pub fn into_sorted(self) -> impl Iterator<Item = DiffRec> {
        self.map.into_values()
    }
}

/// Keys of the entries of a map of non-overlapping ranges (keyed by start) that overlap
/// `[addr, end)`; `end_of` gives an entry's end.
pub(crate) fn overlapping_keys<V>(
    map: &BTreeMap<u64, V>,
    addr: u64,
    end: u64,
    end_of: impl Fn(&V) -> u64,
) -> Vec<u64> {
    map.range(..end)
        .rev()
        .take_while(|(_, v)| end_of(v) > addr)
        .map(|(&k, _)| k)
        .collect()
}

fn data_len(r: &DiffRec) -> usize {
    match &r.body {
        Body::Data(_) => r.blocks as usize * LBS,
        _ => 0,
    }
}

//! The in-memory diff record every reader yields and every writer takes: an LB range and its
//! content, always uncompressed. Compression lives only in the on-disk encodings.

use bytes::Bytes;

use crate::types::LBS;

/// What a range of blocks holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Exactly `blocks * 512` bytes of data.
    Data(Bytes),
    /// All zero (stored without data).
    AllZero,
    /// Discarded (stored without data; applied as ignore, zero or passdown).
    Discard,
}

/// `blocks` LBs at `addr`, newest content for that range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffRec {
    pub addr: u64,
    pub blocks: u32,
    pub body: Body,
}

impl DiffRec {
    pub fn end(&self) -> u64 {
        self.addr + self.blocks as u64
    }

    /// The sub-range `[from, to)` of this record (LB addresses inside it); data is sliced, not copied.
    pub fn slice(&self, from: u64, to: u64) -> DiffRec {
        debug_assert!(self.addr <= from && from < to && to <= self.end());
        let body = match &self.body {
            Body::Data(d) => {
                let s = ((from - self.addr) as usize) * LBS;
                let e = ((to - self.addr) as usize) * LBS;
                Body::Data(d.slice(s..e))
            }
            other => other.clone(),
        };
        DiffRec {
            addr: from,
            blocks: (to - from) as u32,
            body,
        }
    }

    /// Splits into pieces of at most `max_blocks` LBs.
    pub fn split(self, max_blocks: u32) -> impl Iterator<Item = DiffRec> {
        let mut at = self.addr;
        let end = self.end();
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let to = end.min(at + max_blocks as u64);
            let piece = self.slice(at, to);
            at = to;
            Some(piece)
        })
    }
}

/// True when every byte is zero.
pub fn is_all_zero(data: &[u8]) -> bool {
    let (pre, mid, post) = unsafe {
        // SAFETY: u64 has no invalid bit patterns; align_to returns correctly aligned middle.
        data.align_to::<u64>()
    };
    pre.iter().all(|&b| b == 0) && mid.iter().all(|&w| w == 0) && post.iter().all(|&b| b == 0)
}

//! An image index (docs/repository.md, "Image index"): the image's MetaState, its size, the
//! chunk size and each chunk's BLAKE3 in order (32 zero bytes for an all-zero chunk, which is
//! not stored).

use bytes::Bytes;
use walb_core::meta::MetaState;

use crate::error::{Error, Result};
use crate::frame::{self, Codec, Kind};

const VERSION: u32 = 1;
const ZERO: [u8; 32] = [0; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Index {
    pub state: MetaState,
    pub size: u64,
    pub chunk_size: u32,
    /// `None`: an all-zero chunk.
    pub chunks: Vec<Option<[u8; 32]>>,
}

impl Index {
    /// The length of chunk `i` (the last may be shorter).
    pub fn chunk_len(&self, i: usize) -> usize {
        let start = i as u64 * self.chunk_size as u64;
        (self.size - start).min(self.chunk_size as u64) as usize
    }

    pub fn encode(&self) -> Result<Bytes> {
        let st = self.state.to_bytes();
        let mut raw = Vec::with_capacity(24 + st.len() + self.chunks.len() * 32);
        raw.extend_from_slice(&VERSION.to_le_bytes());
        raw.extend_from_slice(&self.chunk_size.to_le_bytes());
        raw.extend_from_slice(&self.size.to_le_bytes());
        raw.extend_from_slice(&(st.len() as u32).to_le_bytes());
        raw.extend_from_slice(&st);
        raw.extend_from_slice(&(self.chunks.len() as u64).to_le_bytes());
        for c in &self.chunks {
            raw.extend_from_slice(c.as_ref().unwrap_or(&ZERO));
        }
        frame::encode(Kind::Index, &raw, Codec::None, 0)
    }

    pub fn decode(key: &str, obj: &Bytes) -> Result<Index> {
        let (_, raw) = frame::decode(key, obj, Kind::Index)?;
        let bad = |why: String| Error::corrupt(key, why);
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let s = raw
                .get(at..at + n)
                .ok_or_else(|| bad(format!("index ends at byte {}, need {n} more", raw.len())))?;
            at += n;
            Ok(s)
        };
        let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let version = u32_(take(4)?);
        if version != VERSION {
            return Err(Error::corrupt(key, format!("index version {version}")));
        }
        let chunk_size = u32_(take(4)?);
        let size = u64_(take(8)?);
        let st_len = u32_(take(4)?) as usize;
        let state = MetaState::from_bytes(take(st_len)?)
            .map_err(|e| Error::corrupt(key, format!("state: {e}")))?;
        let n = u64_(take(8)?);
        if chunk_size == 0 || n != size.div_ceil(chunk_size as u64) {
            return Err(Error::corrupt(
                key,
                format!("{n} chunks of {chunk_size} bytes for an image of {size} bytes"),
            ));
        }
        let mut chunks = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let h: [u8; 32] = take(32)?.try_into().expect("32 bytes");
            chunks.push((h != ZERO).then_some(h));
        }
        if at != raw.len() {
            return Err(Error::corrupt(key, "bytes after the last chunk hash"));
        }
        Ok(Index {
            state,
            size,
            chunk_size,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use walb_core::meta::MetaSnap;
    use walb_core::Gid;

    #[test]
    fn an_index_round_trips_and_a_wrong_count_is_refused() {
        let ix = Index {
            state: MetaState::new(MetaSnap::new(Gid(0), Gid(4)).unwrap(), 1234),
            size: 5 << 20,
            chunk_size: 2 << 20,
            chunks: vec![Some([1; 32]), None, Some([3; 32])],
        };
        let obj = ix.encode().unwrap();
        assert_eq!(Index::decode("i", &obj).unwrap(), ix);
        assert_eq!(ix.chunk_len(2), 1 << 20);
        let short = Index {
            chunks: vec![None],
            ..ix
        };
        assert!(Index::decode("i", &short.encode().unwrap()).is_err());
    }
}

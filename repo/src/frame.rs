//! The frame every chunk, wdiff and index object is stored in (docs/repository.md,
//! "Object frame"): a 96-byte header with the raw content's BLAKE3 and the stored body's
//! BLAKE3, then the body (the content, zstd-compressed for chunks).

use bytes::{Bytes, BytesMut};

use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"WALBREPO";
pub const HEADER: usize = 96;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chunk = 1,
    Wdiff = 2,
    Index = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Zstd = 1,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub codec: Codec,
    pub raw_len: u64,
    pub body_len: u64,
    pub raw_hash: [u8; 32],
    pub body_hash: [u8; 32],
}

/// Frames `raw`: compressed with zstd at `level` when `codec` says so and that shrinks it
/// (else stored as it is).
pub fn encode(kind: Kind, raw: &[u8], codec: Codec, level: i32) -> Result<Bytes> {
    let raw_hash = *blake3::hash(raw).as_bytes();
    let packed;
    let (codec, body): (Codec, &[u8]) = match codec {
        Codec::Zstd => {
            packed = zstd::bulk::compress(raw, level)
                .map_err(|e| Error::io("zstd compress".to_string(), e))?;
            if packed.len() < raw.len() {
                (Codec::Zstd, &packed)
            } else {
                (Codec::None, raw)
            }
        }
        Codec::None => (Codec::None, raw),
    };
    let h = Header {
        kind,
        codec,
        raw_len: raw.len() as u64,
        body_len: body.len() as u64,
        raw_hash,
        body_hash: *blake3::hash(body).as_bytes(),
    };
    let mut out = BytesMut::with_capacity(HEADER + body.len());
    out.extend_from_slice(&h.to_bytes());
    out.extend_from_slice(body);
    Ok(out.freeze())
}

impl Header {
    pub fn to_bytes(&self) -> [u8; HEADER] {
        let mut b = [0u8; HEADER];
        b[..8].copy_from_slice(MAGIC);
        b[8] = self.kind as u8;
        b[9] = self.codec as u8;
        b[16..24].copy_from_slice(&self.raw_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.body_len.to_le_bytes());
        b[32..64].copy_from_slice(&self.raw_hash);
        b[64..96].copy_from_slice(&self.body_hash);
        b
    }
}

/// The header of `obj`, checked against `kind` and the object's length; `key` names it in
/// errors.
pub fn header(key: &str, obj: &[u8], kind: Kind) -> Result<Header> {
    parse_header(key, obj, kind, obj.len() as u64)
}

/// The header at the start of `head`, of an object of `obj_len` bytes.
pub fn parse_header(key: &str, head: &[u8], kind: Kind, obj_len: u64) -> Result<Header> {
    if head.len() < HEADER || obj_len < HEADER as u64 {
        return Err(Error::corrupt(
            key,
            format!("{obj_len} bytes, shorter than the {HEADER}-byte frame header"),
        ));
    }
    let obj = &head[..HEADER];
    if &obj[..8] != MAGIC {
        return Err(Error::corrupt(key, "no WALBREPO magic"));
    }
    let k = match obj[8] {
        1 => Kind::Chunk,
        2 => Kind::Wdiff,
        3 => Kind::Index,
        k => return Err(Error::corrupt(key, format!("unknown object kind {k}"))),
    };
    if k != kind {
        return Err(Error::corrupt(
            key,
            format!("a {k:?} where a {kind:?} belongs"),
        ));
    }
    let codec = match obj[9] {
        0 => Codec::None,
        1 => Codec::Zstd,
        c => return Err(Error::corrupt(key, format!("unknown codec {c}"))),
    };
    let u64_at = |o: usize| u64::from_le_bytes(obj[o..o + 8].try_into().expect("8 bytes"));
    let h = Header {
        kind: k,
        codec,
        raw_len: u64_at(16),
        body_len: u64_at(24),
        raw_hash: obj[32..64].try_into().expect("32 bytes"),
        body_hash: obj[64..96].try_into().expect("32 bytes"),
    };
    if h.body_len != obj_len - HEADER as u64 {
        return Err(Error::corrupt(
            key,
            format!(
                "body of {} bytes, the header says {}",
                obj_len - HEADER as u64,
                h.body_len
            ),
        ));
    }
    if h.codec == Codec::None && h.raw_len != h.body_len {
        return Err(Error::corrupt(
            key,
            "stored raw with a raw length unlike its body's",
        ));
    }
    Ok(h)
}

/// Checks the frame and the body's checksum; returns the header and the body.
pub fn check(key: &str, obj: &Bytes, kind: Kind) -> Result<(Header, Bytes)> {
    let h = header(key, obj, kind)?;
    let body = obj.slice(HEADER..);
    if blake3::hash(&body).as_bytes() != &h.body_hash {
        return Err(Error::corrupt(key, "body checksum mismatch"));
    }
    Ok((h, body))
}

/// The raw content of `obj`: frame and body checksum checked, decompressed, and the raw
/// content's hash checked too.
pub fn decode(key: &str, obj: &Bytes, kind: Kind) -> Result<(Header, Bytes)> {
    let (h, body) = check(key, obj, kind)?;
    let raw = match h.codec {
        Codec::None => body,
        Codec::Zstd => {
            let cap = usize::try_from(h.raw_len)
                .ok()
                .filter(|&n| n <= 1 << 30)
                .ok_or_else(|| Error::corrupt(key, format!("raw length {}", h.raw_len)))?;
            let v = zstd::bulk::decompress(&body, cap)
                .map_err(|e| Error::corrupt(key, format!("zstd: {e}")))?;
            Bytes::from(v)
        }
    };
    if raw.len() as u64 != h.raw_len {
        return Err(Error::corrupt(
            key,
            format!("{} raw bytes, the header says {}", raw.len(), h.raw_len),
        ));
    }
    if blake3::hash(&raw).as_bytes() != &h.raw_hash {
        return Err(Error::corrupt(key, "content hash mismatch"));
    }
    Ok((h, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_damage_is_named() {
        let raw = vec![5u8; 100_000];
        let obj = encode(Kind::Chunk, &raw, Codec::Zstd, 3).unwrap();
        assert!(obj.len() < raw.len());
        let (h, back) = decode("c", &obj, Kind::Chunk).unwrap();
        assert_eq!(h.codec, Codec::Zstd);
        assert_eq!(back, raw);
        assert!(decode("c", &obj, Kind::Wdiff).is_err());
        let mut bad = obj.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let e = decode("chunks/x", &Bytes::from(bad), Kind::Chunk).unwrap_err();
        assert!(e.to_string().contains("chunks/x"), "{e}");
        assert!(decode("c", &obj.slice(..50), Kind::Chunk).is_err());
        // Incompressible content is stored raw.
        let noise: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let obj = encode(Kind::Chunk, &noise, Codec::Zstd, 3).unwrap();
        assert_eq!(decode("n", &obj, Kind::Chunk).unwrap().1, noise);
    }
}

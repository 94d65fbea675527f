//! Compression codecs of wdiff records and full-sync bulks, by walb's type codes:
//! 0 none, 1 zlib stream, 2 raw snappy block, 3 xz container, 4 raw LZ4 block, 5 zstd frame.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    None = 0,
    Zlib = 1,
    Snappy = 2,
    Xz = 3,
    Lz4 = 4,
    Zstd = 5,
}

impl Codec {
    pub fn from_code(code: u8) -> Option<Codec> {
        Some(match code {
            0 => Codec::None,
            1 => Codec::Zlib,
            2 => Codec::Snappy,
            3 => Codec::Xz,
            4 => Codec::Lz4,
            5 => Codec::Zstd,
            _ => return None,
        })
    }
    pub fn code(self) -> u8 {
        self as u8
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zlib => "zlib",
            Codec::Snappy => "snappy",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }
}

/// A codec and its level (0 = the codec's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cmpr {
    pub codec: Codec,
    pub level: u32,
}

impl Cmpr {
    pub const NONE: Cmpr = Cmpr {
        codec: Codec::None,
        level: 0,
    };
    pub fn new(codec: Codec, level: u32) -> Cmpr {
        Cmpr { codec, level }
    }

    /// Compresses `src`; `None` when the result would not be strictly smaller (store raw).
    pub fn compress(&self, src: &[u8]) -> Result<Option<Vec<u8>>> {
        let out = match self.codec {
            Codec::None => return Ok(None),
            Codec::Zlib => {
                let level = if self.level == 0 {
                    6
                } else {
                    self.level.min(9)
                };
                let mut e = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(src.len() / 2),
                    flate2::Compression::new(level),
                );
                e.write_all(src).map_err(|e| codec_err(Codec::Zlib, e))?;
                e.finish().map_err(|e| codec_err(Codec::Zlib, e))?
            }
            Codec::Snappy => {
                return with_scratch(
                    snap::raw::max_compress_len(src.len()),
                    |buf| {
                        SNAPPY
                            .with_borrow_mut(|enc| enc.compress(src, buf))
                            .map_err(|e| codec_err(Codec::Snappy, e))
                    },
                    src.len(),
                )
            }
            Codec::Xz => {
                let level = if self.level == 0 {
                    6
                } else {
                    self.level.min(9)
                };
                let mut e = xz2::write::XzEncoder::new(Vec::with_capacity(src.len() / 2), level);
                e.write_all(src).map_err(|e| codec_err(Codec::Xz, e))?;
                e.finish().map_err(|e| codec_err(Codec::Xz, e))?
            }
            Codec::Lz4 => {
                return with_scratch(
                    lz4_flex::block::get_maximum_output_size(src.len()),
                    |buf| {
                        lz4_flex::block::compress_into(src, buf)
                            .map_err(|e| codec_err(Codec::Lz4, e))
                    },
                    src.len(),
                )
            }
            Codec::Zstd => {
                let level = if self.level == 0 {
                    1
                } else {
                    self.level.min(19)
                } as i32;
                return with_scratch(
                    zstd::zstd_safe::compress_bound(src.len()),
                    |buf| {
                        ZSTD.with_borrow_mut(|z| {
                            if z.as_ref().is_none_or(|(l, _)| *l != level) {
                                *z = Some((level, zstd::bulk::Compressor::new(level)?));
                            }
                            z.as_mut().expect("just set").1.compress_to_buffer(src, buf)
                        })
                        .map_err(|e| codec_err(Codec::Zstd, e))
                    },
                    src.len(),
                );
            }
        };
        Ok((out.len() < src.len()).then_some(out))
    }
}

thread_local! {
    /// Per-thread output buffer for block codecs: zeroed once, not per record.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    static SNAPPY: std::cell::RefCell<snap::raw::Encoder> = std::cell::RefCell::new(snap::raw::Encoder::new());
    /// A zstd context is costly to build; keep one per thread for the last level used.
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { std::cell::RefCell::new(None) };
    /// The same for decompression (None if it could not be made: one per record then). A
    /// context per record cost more than a small record's decompression.
    static UNZSTD: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        std::cell::RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// Runs a block compressor into the scratch buffer (`max` bytes); copies out the result only
/// when it is strictly smaller than the input.
fn with_scratch(
    max: usize,
    f: impl FnOnce(&mut [u8]) -> Result<usize>,
    src_len: usize,
) -> Result<Option<Vec<u8>>> {
    SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < max {
            buf.resize(max, 0);
        }
        let n = f(&mut buf[..max])?;
        Ok((n < src_len).then(|| buf[..n].to_vec()))
    })
}

/// The largest decompressed record or image: a whole wdiff pack's worth (32 MiB).
pub const MAX_DECOMPRESSED: usize = 32 << 20;

/// Decompresses `src` stored with `codec` into exactly `orig_len` bytes.
pub fn decompress(codec: Codec, src: &[u8], orig_len: usize) -> Result<Vec<u8>> {
    // Sizes come from untrusted headers: refuse before allocating.
    if orig_len > MAX_DECOMPRESSED {
        return Err(size_err(codec, orig_len, MAX_DECOMPRESSED));
    }
    let out = match codec {
        Codec::None => src.to_vec(),
        Codec::Zlib => read_exact_all(flate2::read::ZlibDecoder::new(src), orig_len, codec)?,
        Codec::Snappy => {
            let n = snap::raw::decompress_len(src).map_err(|e| codec_err(codec, e))?;
            if n != orig_len {
                return Err(size_err(codec, n, orig_len));
            }
            snap::raw::Decoder::new()
                .decompress_vec(src)
                .map_err(|e| codec_err(codec, e))?
        }
        Codec::Xz => read_exact_all(xz2::read::XzDecoder::new(src), orig_len, codec)?,
        Codec::Lz4 => {
            lz4_flex::block::decompress(src, orig_len).map_err(|e| codec_err(codec, e))?
        }
        Codec::Zstd => UNZSTD
            .with_borrow_mut(|d| match d {
                Some(d) => d.decompress(src, orig_len),
                None => zstd::bulk::decompress(src, orig_len),
            })
            .map_err(|e| codec_err(codec, e))?,
    };
    if out.len() != orig_len {
        return Err(size_err(codec, out.len(), orig_len));
    }
    Ok(out)
}

fn read_exact_all(r: impl Read, orig_len: usize, codec: Codec) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(orig_len);
    // One byte more than expected reveals an over-long stream.
    r.take(orig_len as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| codec_err(codec, e))?;
    Ok(out)
}

fn codec_err(codec: Codec, e: impl fmt::Display) -> Error {
    Error::Codec {
        codec: codec.name(),
        msg: e.to_string(),
    }
}

fn size_err(codec: Codec, got: usize, want: usize) -> Error {
    Error::Codec {
        codec: codec.name(),
        msg: format!("decompressed size {got} bytes, expected {want}"),
    }
}

impl fmt::Display for Cmpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.codec.name(), self.level)
    }
}

impl FromStr for Cmpr {
    type Err = Error;
    /// `TYPE[:LEVEL[:NCPU]]`; walb's names gzip and lzma are accepted for zlib and xz.
    fn from_str(s: &str) -> Result<Cmpr> {
        let mut it = s.split(':');
        let name = it.next().unwrap_or("");
        let codec = match name.to_ascii_lowercase().as_str() {
            "none" => Codec::None,
            "zlib" | "gzip" => Codec::Zlib,
            "snappy" => Codec::Snappy,
            "xz" | "lzma" => Codec::Xz,
            "lz4" => Codec::Lz4,
            "zstd" => Codec::Zstd,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown compression {name:?} (none, zlib, snappy, xz, lz4, zstd)"
                )))
            }
        };
        let level = match it.next() {
            None | Some("") => 0,
            Some(l) => l
                .parse()
                .map_err(|_| Error::Invalid(format!("bad compression level {l:?}")))?,
        };
        Ok(Cmpr { codec, level })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_every_codec() {
        let mut data = vec![0u8; 64 * 1024];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i / 7 % 13) as u8;
        }
        for code in 1..=5 {
            let c = Cmpr::new(Codec::from_code(code).unwrap(), 0);
            let z = c.compress(&data).unwrap().expect("compressible");
            assert!(z.len() < data.len());
            assert_eq!(decompress(c.codec, &z, data.len()).unwrap(), data);
            assert!(decompress(c.codec, &z, data.len() + 512).is_err());
        }
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let data: Vec<u8> = (0..4096).map(|_| rand::random()).collect();
        for code in 1..=5 {
            let c = Cmpr::new(Codec::from_code(code).unwrap(), 0);
            assert!(c.compress(&data).unwrap().is_none());
        }
    }

    #[test]
    fn huge_claimed_size_is_refused_without_allocating() {
        for code in 0..=5 {
            let e = decompress(Codec::from_code(code).unwrap(), &[1, 2, 3], 1 << 41);
            assert!(e.is_err());
        }
    }

    #[test]
    fn parse() {
        assert_eq!("zstd:3".parse::<Cmpr>().unwrap(), Cmpr::new(Codec::Zstd, 3));
        assert_eq!("gzip".parse::<Cmpr>().unwrap().codec, Codec::Zlib);
        assert!("lzo".parse::<Cmpr>().is_err());
    }
}

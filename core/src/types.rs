//! Unit-carrying integer types. Addresses and sizes on the data device are in logical blocks
//! (`Lb`, 512 bytes); log positions are lsids counted in physical blocks of `Pbs` bytes.

use std::fmt;

/// Logical block size: every IO address and size in walb's formats counts these.
pub const LBS: usize = 512;

/// Log sequence id: a position in the log stream, counted in physical blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsid(pub u64);

/// Generation id: a snapshot boundary in the log stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gid(pub u64);

/// An address or length in logical blocks (512 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lb(pub u64);

impl Lb {
    pub fn bytes(self) -> u64 {
        self.0 * LBS as u64
    }
}

/// Physical block size of a walb device: 512 or 4096 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pbs(u32);

impl Pbs {
    pub const B512: Pbs = Pbs(512);
    pub const B4096: Pbs = Pbs(4096);

    /// Accepts only the block sizes walb supports.
    pub fn new(bytes: u32) -> Option<Pbs> {
        match bytes {
            512 | 4096 => Some(Pbs(bytes)),
            _ => None,
        }
    }
    pub fn bytes(self) -> usize {
        self.0 as usize
    }
    pub fn get(self) -> u32 {
        self.0
    }
    /// Logical blocks per physical block.
    pub fn lbs_per_pb(self) -> u32 {
        self.0 / LBS as u32
    }
    /// Physical blocks needed to hold `lb` logical blocks.
    pub fn pbs_for_lb(self, lb: u64) -> u64 {
        (lb * LBS as u64).div_ceil(self.0 as u64)
    }
}

impl fmt::Display for Pbs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Lsid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Gid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A 16-byte walb uuid (WAL generation of a device, or an archive's identity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    pub fn random() -> Uuid {
        Uuid(rand::random())
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::str::FromStr for Uuid {
    type Err = String;
    fn from_str(s: &str) -> Result<Uuid, String> {
        let v = hex::decode(s.replace('-', "")).map_err(|e| format!("bad uuid {s:?}: {e}"))?;
        let a: [u8; 16] = v
            .try_into()
            .map_err(|_| format!("bad uuid {s:?}: not 16 bytes"))?;
        Ok(Uuid(a))
    }
}

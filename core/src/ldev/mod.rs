//! The log device: superblock and ring layout, reading and writing logpacks in the ring.

pub mod ring;
pub mod superblock;

pub use ring::Ldev;
pub use superblock::SuperBlock;

//! A deterministic generator of valid logpacks (random writes, discards, all-zero writes,
//! padding, ring wrap-around) for tests, fuzz seeds and `walb-tool wlog-gen`.

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::logpack::builder::Full;
use crate::logpack::{LogPackHeader, PackBuilder};
use crate::types::{Pbs, LBS};

#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Data device size in LB.
    pub dev_lb: u64,
    /// Stop after this many bytes of log (headers and data).
    pub total_bytes: u64,
    pub pbs: Pbs,
    pub seed: u64,
    pub begin_lsid: u64,
    /// IO size bounds in LB.
    pub min_io_lb: u32,
    pub max_io_lb: u32,
    pub discard: bool,
    pub allzero: bool,
    pub padding: bool,
    /// Incompressible data instead of a compressible pattern.
    pub random_data: bool,
    /// Lay packs out for a ring of this many PBs (padding at the ring end).
    pub ring_size: Option<u64>,
    pub salt: u32,
}

impl GenConfig {
    pub fn new(dev_lb: u64, total_bytes: u64, pbs: Pbs, seed: u64) -> GenConfig {
        GenConfig {
            dev_lb,
            total_bytes,
            pbs,
            seed,
            begin_lsid: 0,
            min_io_lb: 1,
            max_io_lb: 64,
            discard: true,
            allzero: true,
            padding: true,
            random_data: false,
            ring_size: None,
            salt: 0,
        }
    }
}

/// Yields `(header, data)` packs with contiguous lsids.
pub struct Generator {
    cfg: GenConfig,
    rng: StdRng,
    builder: PackBuilder,
    produced: u64,
    pending: Option<Io>,
}

enum Io {
    Write(u64, Vec<u8>),
    Discard(u64, u32),
}

impl Generator {
    pub fn new(cfg: GenConfig) -> Generator {
        assert!(cfg.min_io_lb >= 1 && cfg.min_io_lb <= cfg.max_io_lb);
        assert!(cfg.max_io_lb as u64 <= cfg.dev_lb && cfg.max_io_lb <= 65535);
        Generator {
            rng: StdRng::seed_from_u64(cfg.seed),
            builder: PackBuilder::new(cfg.pbs, cfg.begin_lsid, cfg.ring_size),
            produced: 0,
            pending: None,
            cfg,
        }
    }

    fn random_io(&mut self) -> Io {
        let c = &self.cfg;
        let lb = self.rng.gen_range(c.min_io_lb..=c.max_io_lb);
        let offset = self.rng.gen_range(0..=c.dev_lb - lb as u64);
        let roll = self.rng.gen_range(0..100);
        if c.discard && roll < 5 {
            return Io::Discard(offset, lb);
        }
        let mut data = vec![0u8; lb as usize * LBS];
        if !(c.allzero && roll < 10) {
            if c.random_data {
                self.rng.fill_bytes(&mut data);
            } else {
                // Compressible: a few distinct 8-byte words per block.
                let base: u64 = self.rng.gen();
                for (i, w) in data.chunks_exact_mut(8).enumerate() {
                    w.copy_from_slice(&(base ^ (i as u64 / 16)).to_le_bytes());
                }
            }
        }
        Io::Write(offset, data)
    }

    fn add(&mut self, io: &Io) -> Result<(), Full> {
        match io {
            Io::Write(off, data) => self.builder.add_write(*off, data, self.cfg.salt),
            Io::Discard(off, lb) => self.builder.add_discard(*off, *lb),
        }
    }
}

impl Iterator for Generator {
    type Item = (LogPackHeader, Vec<u8>);

    fn next(&mut self) -> Option<(LogPackHeader, Vec<u8>)> {
        if self.produced >= self.cfg.total_bytes && self.pending.is_none() {
            return None;
        }
        let pbs = self.cfg.pbs.bytes() as u64;
        loop {
            let io = match self.pending.take() {
                Some(io) => io,
                None => self.random_io(),
            };
            if self.add(&io).is_err() {
                self.pending = Some(io);
                break;
            }
            let size = (1 + self.builder.header().total_io_size as u64) * pbs;
            if self.produced + size >= self.cfg.total_bytes || self.rng.gen_range(0..8) == 0 {
                break;
            }
            if self.cfg.padding && self.cfg.ring_size.is_none() && self.rng.gen_range(0..30) == 0 {
                let pad = self.rng.gen_range(1..=4);
                if self.builder.can_pad(pad) {
                    self.builder.add_padding(pad);
                }
            }
        }
        let (h, d) = self.builder.take();
        if h.records.is_empty() {
            return self.next();
        }
        self.produced += (1 + h.total_io_size as u64) * pbs;
        if self.produced >= self.cfg.total_bytes {
            self.pending = None;
        }
        Some((h, d))
    }
}

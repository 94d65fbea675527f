//! wlog and ldev round trips, ring wrap-around, end-of-log detection and redo.

use bytes::Bytes;
use proptest::prelude::*;
use walb_core::apply::{Applier, DiscardMode};
use walb_core::blockio::{BlockIo, FileIo};
use walb_core::ldev::Ldev;
use walb_core::logpack::{LogPack, LogPackHeader};
use walb_core::source::BytesSource;
use walb_core::wdiff::{Body, DiffRec};
use walb_core::wlog::{GenConfig, Generator, WlogHeader, WlogReader, WlogWriter};
use walb_core::{Pbs, Uuid, LBS};

fn gen_packs(cfg: &GenConfig) -> Vec<(LogPackHeader, Vec<u8>)> {
    Generator::new(cfg.clone()).collect()
}

fn write_wlog(cfg: &GenConfig, packs: &[(LogPackHeader, Vec<u8>)]) -> Vec<u8> {
    let h = WlogHeader {
        salt: cfg.salt,
        pbs: cfg.pbs,
        uuid: Uuid([7; 16]),
        begin_lsid: cfg.begin_lsid,
        end_lsid: u64::MAX,
    };
    let mut w = WlogWriter::new(Vec::new(), h).unwrap();
    for (h, d) in packs {
        w.write_pack(h, d).unwrap();
    }
    w.finish().unwrap()
}

fn read_wlog(b: Vec<u8>) -> walb_core::Result<Vec<LogPack>> {
    WlogReader::new(Box::new(BytesSource::new(Bytes::from(b))))?.collect()
}

/// Applies records to an in-memory image, discards as zeros.
fn model_apply(img: &mut [u8], r: &DiffRec) {
    let s = r.addr as usize * LBS;
    let e = r.end() as usize * LBS;
    match &r.body {
        Body::Data(d) => img[s..e].copy_from_slice(d),
        _ => img[s..e].fill(0),
    }
}

fn cfg(pbs: Pbs, seed: u64) -> GenConfig {
    let mut c = GenConfig::new(4096, 1 << 20, pbs, seed);
    c.salt = seed as u32 ^ 0x5a5a;
    c.begin_lsid = seed * 3;
    c
}

#[test]
fn wlog_roundtrip_both_pbs() {
    for pbs in [Pbs::B512, Pbs::B4096] {
        let c = cfg(pbs, 11);
        let packs = gen_packs(&c);
        assert!(packs.iter().any(|(h, _)| h.n_padding() > 0));
        let got = read_wlog(write_wlog(&c, &packs)).unwrap();
        assert_eq!(got.len(), packs.len());
        for (g, (h, d)) in got.iter().zip(&packs) {
            assert_eq!(&g.header, h);
            assert_eq!(&g.data[..], &d[..]);
        }
    }
}

#[test]
fn concatenated_wlogs_read_as_one() {
    let c = cfg(Pbs::B4096, 5);
    let packs = gen_packs(&c);
    let (a, b) = packs.split_at(packs.len() / 2);
    let mut c2 = c.clone();
    c2.begin_lsid = b[0].0.lsid;
    let mut bytes = write_wlog(&c, a);
    bytes.extend(write_wlog(&c2, b));
    assert_eq!(read_wlog(bytes.clone()).unwrap().len(), packs.len());
    // A gap in lsids between the files is an error.
    let mut c3 = c2.clone();
    c3.begin_lsid += 1;
    let mut bad = write_wlog(&c, a);
    let mut shifted: Vec<_> = b.to_vec();
    for (h, _) in &mut shifted {
        h.lsid += 1;
        for r in &mut h.records {
            r.lsid += 1;
        }
    }
    bad.extend(write_wlog(&c3, &shifted));
    let e = read_wlog(bad).unwrap_err().to_string();
    assert!(e.contains("begins at lsid"), "{e}");
}

#[test]
fn corrupt_wlog_is_an_error_never_a_panic() {
    let c = cfg(Pbs::B512, 3);
    let packs = gen_packs(&c);
    let good = write_wlog(&c, &packs);
    let mut rng = 12345u64;
    for _ in 0..400 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1);
        let at = (rng >> 20) as usize % good.len();
        let mut bad = good.clone();
        bad[at] ^= 1 << (rng % 8);
        // Undefined tail bytes of a PB and padding data are not covered by any checksum.
        let _ = read_wlog(bad);
    }
    // Inside a header or a pack: an error. At a pack boundary EOF is a valid end
    // (docs/formats.md §4).
    for cut in [1, 100, 4097, 5000, good.len() - 513] {
        assert!(read_wlog(good[..cut].to_vec()).is_err(), "cut {cut}");
    }
    for cut in [4096, good.len() - 512] {
        assert!(read_wlog(good[..cut].to_vec()).is_ok(), "cut {cut}");
    }
    // A flipped byte in the first pack header must be caught.
    let mut bad = good.clone();
    bad[4096 + 30] ^= 0x40;
    assert!(read_wlog(bad).is_err());
}

#[test]
fn wrong_lsid_is_named() {
    let c = cfg(Pbs::B4096, 21);
    let mut packs = gen_packs(&c);
    // Re-seal the second pack at a wrong lsid: valid on its own, out of place in the stream.
    let h = &mut packs[1].0;
    h.lsid += 1;
    for r in &mut h.records {
        r.lsid += 1;
    }
    let mut w = WlogWriter::new(
        Vec::new(),
        WlogHeader {
            salt: c.salt,
            pbs: c.pbs,
            uuid: Uuid([7; 16]),
            begin_lsid: c.begin_lsid,
            end_lsid: u64::MAX,
        },
    )
    .unwrap();
    w.write_pack(&packs[0].0, &packs[0].1).unwrap();
    let e = w
        .write_pack(&packs[1].0, &packs[1].1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not follow"), "{e}");
    // Forced into a file, the reader names the rule.
    let mut bytes = write_wlog(&c, &packs[..1]);
    bytes.truncate(bytes.len() - 4096);
    bytes.extend(packs[1].0.encode(c.pbs, c.salt));
    bytes.extend(&packs[1].1);
    let e = read_wlog(bytes).unwrap_err().to_string();
    assert!(e.contains("logpack_lsid") && e.contains("expected"), "{e}");
}

fn ldev_file(ring_pb: u64, pbs: Pbs) -> (tempfile::NamedTempFile, Ldev) {
    let f = tempfile::NamedTempFile::new().unwrap();
    let off = walb_core::ldev::superblock::ring_offset_pb(pbs);
    f.as_file()
        .set_len((off + ring_pb) * pbs.bytes() as u64)
        .unwrap();
    let io = FileIo::open(f.path(), true).unwrap();
    let ldev = Ldev::format(Box::new(io), 2 << 20, pbs, "t").unwrap();
    (f, ldev)
}

/// Each normal record's bytes in a pack's data (what `Ldev::write_pack_parts` takes).
fn record_parts<'a>(h: &LogPackHeader, d: &'a [u8], pbs: Pbs) -> Vec<&'a [u8]> {
    h.records
        .iter()
        .filter(|r| r.kind == walb_core::logpack::record::RecKind::Normal)
        .map(|r| {
            let at = (r.lsid - h.lsid - 1) as usize * pbs.bytes();
            &d[at..at + r.io_size as usize * LBS]
        })
        .collect()
}

#[test]
fn ring_wraps_and_end_of_log_is_found() {
    // Packs written from one buffer, then from each record's own (`write_pack_parts`).
    for (pbs, parts) in [
        (Pbs::B512, false),
        (Pbs::B4096, false),
        (Pbs::B512, true),
        (Pbs::B4096, true),
    ] {
        let ring = 700;
        let (f, mut ldev) = ldev_file(ring, pbs);
        assert_eq!(ldev.sb.ring_buffer_size, ring);
        let mut c = cfg(pbs, 9);
        c.salt = ldev.sb.log_checksum_salt;
        c.ring_size = Some(ring);
        c.begin_lsid = 3 * ring - 150;
        c.total_bytes = 400 * pbs.bytes() as u64;
        c.max_io_lb = 32;
        let packs = gen_packs(&c);
        let wrapped = packs.iter().any(|(h, _)| h.n_padding() > 0);
        for (h, d) in &packs {
            if parts {
                ldev.write_pack_parts(h, &record_parts(h, d, pbs)).unwrap();
            } else {
                ldev.write_pack(h, d).unwrap();
            }
        }
        assert!(wrapped, "some record hit the ring end");
        let mut reopened =
            Ldev::open(Box::new(FileIo::open(f.path(), false).unwrap()), None).unwrap();
        let mut lsid = c.begin_lsid;
        for (h, d) in &packs {
            let p = reopened.read_pack(lsid).unwrap().expect("valid pack");
            assert_eq!(&p.header, h);
            assert_eq!(&p.data[..], &d[..]);
            assert!(p.verify(pbs, c.salt, 0).is_ok());
            lsid = p.header.next_lsid();
        }
        assert!(reopened.read_pack(lsid).unwrap().is_none(), "end of log");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn redo_of_wlog_equals_model(seed in 0u64..1000, big in any::<bool>()) {
        let pbs = if seed % 2 == 0 { Pbs::B512 } else { Pbs::B4096 };
        let mut c = cfg(pbs, seed);
        if big { c.max_io_lb = 2100; c.total_bytes = 4 << 20; }
        let packs = read_wlog(write_wlog(&c, &gen_packs(&c))).unwrap();
        let size = c.dev_lb as usize * LBS;
        let mut model = vec![0u8; size];
        let img = tempfile::tempfile().unwrap();
        img.set_len(size as u64).unwrap();
        let mut io = walb_core::blockio::UringIo::new(img.try_clone().unwrap(), 16);
        let mut ap = Applier::new(&mut io, DiscardMode::Zero).unwrap();
        for p in &packs {
            for r in p.diff_recs(pbs) {
                model_apply(&mut model, &r);
                ap.apply(&r).unwrap();
            }
        }
        ap.finish().unwrap();
        let mut got = vec![0u8; size];
        FileIo::from_file(img).unwrap().read_at(&mut got, 0).unwrap();
        prop_assert!(got == model);
    }
}

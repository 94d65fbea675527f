//! walb-tool as operators run it: real processes on real files. Every path from a log to an
//! image must give the same BLAKE3 digest; bad input must fail with a message naming the file.

use std::path::Path;
use std::process::Command;

use walb_core::blockio::FileIo;
use walb_core::ldev::Ldev;
use walb_core::wlog::{GenConfig, Generator};
use walb_core::{Pbs, LBS};
use walb_tests::{bin, run_err, run_ok};

fn tool(dir: &Path) -> Command {
    let mut c = Command::new(bin("walb-tool"));
    c.current_dir(dir);
    c
}

fn digest(dir: &Path, img: &str) -> String {
    let out = run_ok(tool(dir).args(["bhash", img]));
    out.split_whitespace().next().unwrap().to_string()
}

fn blank(dir: &Path, name: &str, bytes: u64) {
    std::fs::File::create(dir.join(name))
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

const UUID: &str = "000102030405060708090a0b0c0d0e0f";

#[test]
fn tutorial_offline_tools() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run_ok(tool(dir).args([
        "wlog-gen", "--size", "8M", "--total", "2M", "--pbs", "512", "--seed", "4", "--max-io",
        "600K", "--uuid", UUID, "-o", "a.wlog",
    ]));
    let stat = run_ok(tool(dir).args(["wlog-show", "--stat", "a.wlog"]));
    let end: u64 = stat
        .split("lsid 0..")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no end lsid in {stat:?}"));
    run_ok(tool(dir).args([
        "wlog-gen",
        "--size",
        "8M",
        "--total",
        "2M",
        "--pbs",
        "512",
        "--seed",
        "5",
        "--lsid",
        &end.to_string(),
        "--uuid",
        UUID,
        "-o",
        "b.wlog",
    ]));
    run_ok(tool(dir).args(["wlog-show", "--validate", "b.wlog"]));
    run_ok(tool(dir).args([
        "wlog-to-wdiff",
        "--cmpr",
        "zstd:3",
        "a.wlog",
        "-o",
        "a.wdiff",
    ]));
    run_ok(tool(dir).args([
        "wlog-to-wdiff",
        "--indexed",
        "--cmpr",
        "lz4",
        "b.wlog",
        "-o",
        "b.wdiff",
    ]));
    let v = run_ok(tool(dir).args(["wdiff-show", "--verify", "a.wdiff", "b.wdiff"]));
    assert_eq!(v.matches(" valid").count(), 2, "{v}");
    run_ok(tool(dir).args([
        "wdiff-merge",
        "--cmpr",
        "xz",
        "a.wdiff",
        "b.wdiff",
        "-o",
        "ab.wdiff",
    ]));
    for img in ["base.img", "w.img", "d.img", "m.img"] {
        blank(dir, img, 8 << 20);
    }
    for (what, inputs, img) in [
        ("wlog-redo", vec!["a.wlog", "b.wlog"], "w.img"),
        ("wdiff-redo", vec!["a.wdiff", "b.wdiff"], "d.img"),
        ("wdiff-redo", vec!["ab.wdiff"], "m.img"),
    ] {
        for i in inputs {
            run_ok(tool(dir).args([what, "--discard", "zero", i, img]));
        }
    }
    run_ok(tool(dir).args([
        "virt-full-cat",
        "base.img",
        "a.wdiff",
        "b.wdiff",
        "-o",
        "v.img",
    ]));
    let want = digest(dir, "w.img");
    assert_ne!(want, digest(dir, "base.img"), "the log changed the image");
    for img in ["d.img", "m.img", "v.img"] {
        assert_eq!(digest(dir, img), want, "{img}");
    }
    // Concatenated contiguous wlogs convert as one.
    run_ok(tool(dir).args(["wlog-to-wdiff", "a.wlog", "b.wlog", "-o", "c.wdiff"]));
    blank(dir, "c.img", 8 << 20);
    run_ok(tool(dir).args(["wdiff-redo", "--discard", "zero", "c.wdiff", "c.img"]));
    assert_eq!(digest(dir, "c.img"), want);
    // wlogs of another WAL generation do not.
    run_ok(tool(dir).args([
        "wlog-gen",
        "--size",
        "8M",
        "--total",
        "64K",
        "--lsid",
        &end.to_string(),
        "-o",
        "o.wlog",
    ]));
    let e = run_err(tool(dir).args(["wlog-to-wdiff", "a.wlog", "o.wlog", "-o", "o.wdiff"]));
    assert!(e.contains("uuid"), "{e}");
}

#[test]
fn wlog_cat_extracts_a_wrapped_ring() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let pbs = Pbs::B4096;
    let ring = 3000u64;
    let ldev_path = dir.join("ldev");
    blank(
        dir,
        "ldev",
        (walb_core::ldev::superblock::ring_offset_pb(pbs) + ring) * 4096,
    );
    let mut ldev = Ldev::format(
        Box::new(FileIo::open(&ldev_path, true).unwrap()),
        4 << 20,
        pbs,
        "v",
    )
    .unwrap();
    let mut c = GenConfig::new((4 << 20) / LBS as u64, 4 << 20, pbs, 8);
    c.salt = ldev.sb.log_checksum_salt;
    c.ring_size = Some(ring);
    c.begin_lsid = 2 * ring - 400;
    let packs: Vec<_> = Generator::new(c.clone()).collect();
    for (h, data) in &packs {
        ldev.write_pack(h, data).unwrap();
    }
    ldev.sb.oldest_lsid = c.begin_lsid;
    ldev.sb.written_lsid = c.begin_lsid;
    ldev.write_super().unwrap();
    drop(ldev);

    run_ok(tool(dir).args(["wlog-cat", "ldev", "-o", "x.wlog"]));
    let stat = run_ok(tool(dir).args(["wlog-show", "--stat", "x.wlog"]));
    let end = packs.last().unwrap().0.next_lsid();
    assert!(
        stat.contains(&format!(
            "lsid {}..{end} packs {}",
            c.begin_lsid,
            packs.len()
        )),
        "{stat}"
    );

    // The extracted log redoes to the same image as the generated packs applied directly.
    blank(dir, "a.img", 4 << 20);
    run_ok(tool(dir).args(["wlog-redo", "--discard", "zero", "x.wlog", "a.img"]));
    let mut model = vec![0u8; 4 << 20];
    for (h, data) in packs {
        let p = walb_core::logpack::LogPack {
            header: h,
            data: data.into(),
        };
        for r in p.diff_recs(pbs) {
            let (s, e) = (r.addr as usize * LBS, r.end() as usize * LBS);
            match r.body {
                walb_core::wdiff::Body::Data(b) => model[s..e].copy_from_slice(&b),
                _ => model[s..e].fill(0),
            }
        }
    }
    assert_eq!(std::fs::read(dir.join("a.img")).unwrap(), model);

    // --end stops before a pack that would cross it.
    run_ok(tool(dir).args([
        "wlog-cat",
        "--end",
        &(c.begin_lsid + 100).to_string(),
        "ldev",
        "-o",
        "y.wlog",
    ]));
    let stat = run_ok(tool(dir).args(["wlog-show", "--stat", "y.wlog"]));
    assert!(stat.contains(&format!("lsid {}..", c.begin_lsid)), "{stat}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    run_ok(tool(dir).args([
        "wlog-gen", "--size", "1M", "--total", "256K", "-o", "a.wlog",
    ]));
    run_ok(tool(dir).args(["wlog-to-wdiff", "--cmpr", "none", "a.wlog", "-o", "a.wdiff"]));
    let mut b = std::fs::read(dir.join("a.wdiff")).unwrap();
    let at = b.len() / 2;
    b[at] ^= 0xff;
    std::fs::write(dir.join("bad.wdiff"), &b).unwrap();
    let e = run_err(tool(dir).args(["wdiff-show", "--verify", "bad.wdiff"]));
    assert!(e.contains("bad.wdiff") && e.contains("checksum"), "{e}");
    blank(dir, "img", 1 << 20);
    let before = digest(dir, "img");
    let e = run_err(tool(dir).args(["wdiff-redo", "bad.wdiff", "img"]));
    assert!(e.contains("bad.wdiff"), "{e}");

    std::fs::write(
        dir.join("cut.wlog"),
        &std::fs::read(dir.join("a.wlog")).unwrap()[..6000],
    )
    .unwrap();
    let e = run_err(tool(dir).args(["wlog-show", "cut.wlog"]));
    assert!(e.contains("cut.wlog") && e.contains("truncated"), "{e}");
    let e = run_err(tool(dir).args(["wlog-to-wdiff", "--cmpr", "lzo", "a.wlog", "-o", "x"]));
    assert!(e.contains("unknown compression"), "{e}");
    let e = run_err(tool(dir).args(["wlog-cat", "a.wlog", "-o", "x"]));
    assert!(e.contains("superblock"), "{e}");
    assert!(!dir.join("x").exists(), "no partial output");
    // The image was never touched by a failed redo of a corrupt record before it.
    let e = run_err(tool(dir).args(["bhash", "--bulk", "1000", "img"]));
    assert!(e.contains("bulk size"), "{e}");
    assert_eq!(digest(dir, "img"), before);
}

#[test]
fn wdevc_format_ldev_makes_an_empty_log() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    blank(dir, "ldev", 8 << 20);
    blank(dir, "ddev", 32 << 20);
    let out = run_ok(Command::new(bin("wdevc")).current_dir(dir).args([
        "format-ldev",
        "ldev",
        "ddev",
        "--pbs",
        "4096",
        "--name",
        "vol0",
    ]));
    assert!(out.contains("device 65536 LB"), "{out}");
    run_ok(tool(dir).args(["wlog-cat", "ldev", "-o", "x.wlog"]));
    let stat = run_ok(tool(dir).args(["wlog-show", "--stat", "x.wlog"]));
    assert!(stat.contains("lsid 0..0 packs 0"), "{stat}");
    let e = run_err(Command::new(bin("wdevc")).current_dir(dir).args([
        "format-ldev",
        "ldev",
        "ddev",
        "--pbs",
        "1024",
    ]));
    assert!(e.contains("512 or 4096"), "{e}");
}

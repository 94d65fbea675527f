//! The repository on a local path (`file://`): upload, list, restore, damage, gc, lease —
//! the same code the S3 runs in tests/tests/repo.rs use, without a server.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use walb_core::atomic::Output;
use walb_core::meta::{MetaDiff, MetaSnap, MetaState};
use walb_core::wdiff::{Body, Cmpr, Codec, DiffRec, SortedWriter};
use walb_core::{Gid, Uuid, LBS};
use walb_repo::rate::Rate;
use walb_repo::upload::{self, Opts, Stats};
use walb_repo::{gc, layout, lease, list, restore, verify, Error, Repo};

const CHUNK: u32 = 64 << 10;

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sorted wdiff writing `data` at byte `off`.
fn wdiff(path: &Path, off: u64, data: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = SortedWriter::new(f, Uuid::default(), Cmpr::new(Codec::None, 0)).unwrap();
    w.push(DiffRec {
        addr: off / LBS as u64,
        blocks: (data.len() / LBS) as u32,
        body: Body::Data(Bytes::copy_from_slice(data)),
    })
    .unwrap();
    w.finish().unwrap();
}

fn opts() -> Opts {
    Opts {
        chunk_size: CHUNK,
        ..Opts::default()
    }
}

async fn restored(repo: &Repo, vol: &str, gid: u64, dir: &Path) -> walb_repo::Result<Vec<u8>> {
    let out = dir.join(format!("{vol}-{gid}"));
    let work = tempfile::tempdir().unwrap();
    restore::restore(
        repo,
        vol,
        Gid(gid),
        Output::create(&out).unwrap(),
        work.path(),
        4,
    )
    .await?;
    Ok(std::fs::read(&out).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_repository_round_trips_dedups_and_sweeps() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = Repo::open(&url).unwrap();
    let stats = Stats::default();

    // An image of 1 MiB: noise with an all-zero chunk in the middle.
    let mut img = noise(1 << 20, 1);
    img[(5 * CHUNK) as usize..(6 * CHUNK) as usize].fill(0);
    let img_path = dir.path().join("img");
    std::fs::write(&img_path, &img).unwrap();
    let s0 = MetaState::new(MetaSnap::clean(Gid(0)), 1000);
    let r = upload::upload_image(&repo, "v0", &s0, &img_path, &opts(), &stats)
        .await
        .unwrap();
    assert!(r.written);
    assert_eq!((r.chunks, r.zero_chunks, r.new_chunks), (16, 1, 15));
    // The same image again is already there; under another volume it costs no chunk.
    let again = upload::upload_image(&repo, "v0", &s0, &img_path, &opts(), &stats)
        .await
        .unwrap();
    assert!(!again.written);
    let other = upload::upload_image(&repo, "v1", &s0, &img_path, &opts(), &stats)
        .await
        .unwrap();
    assert_eq!((other.written, other.new_chunks), (true, 0));

    // A diff 0 → 1 rewriting 8 KiB at 128 KiB.
    let patch = noise(8 << 10, 2);
    let wd = dir.path().join("d01");
    wdiff(&wd, 128 << 10, &patch);
    let mut d = MetaDiff::clean(0, 1).unwrap();
    d.timestamp = 1001;
    let up = upload::upload_wdiff(&repo, "v0", &d, &wd, &Rate::unlimited(), &stats)
        .await
        .unwrap();
    assert!(up.is_some());
    assert_eq!(
        upload::upload_wdiff(&repo, "v0", &d, &wd, &Rate::unlimited(), &stats)
            .await
            .unwrap(),
        None,
        "a wdiff is written once"
    );
    let snaps = list::snapshots(&repo, "v0").await.unwrap();
    assert_eq!(
        snaps.iter().map(|s| s.gid.0).collect::<Vec<_>>(),
        vec![0, 1]
    );

    let out = tempfile::tempdir().unwrap();
    assert_eq!(restored(&repo, "v0", 0, out.path()).await.unwrap(), img);
    let mut want = img.clone();
    want[128 << 10..(128 << 10) + patch.len()].copy_from_slice(&patch);
    assert_eq!(restored(&repo, "v0", 1, out.path()).await.unwrap(), want);
    match restored(&repo, "v0", 2, out.path()).await {
        Err(Error::NotFound(m)) => assert!(m.contains("gid 2"), "{m}"),
        r => panic!("gid 2: {:?}", r.map(|v| v.len())),
    }
    let v = verify::verify(&repo, true, 4).await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!((v.chunks, v.indexes, v.wdiffs), (15, 2, 1));

    // A damaged chunk: verify names it, a restore through it fails naming it.
    let ix = list::index(&repo, "v0", &s0.snap_b).await.unwrap();
    let victim = layout::chunk(&ix.chunks[3].unwrap());
    let file = dir.path().join("repo").join(victim.as_ref());
    let mut b = std::fs::read(&file).unwrap();
    let n = b.len() - 1;
    b[n] ^= 0x40;
    std::fs::write(&file, &b).unwrap();
    let v = verify::verify(&repo, false, 4).await.unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    assert!(v.problems[0].contains(victim.as_ref()), "{:?}", v.problems);
    let e = restored(&repo, "v0", 0, out.path()).await.unwrap_err();
    assert!(e.to_string().contains(victim.as_ref()), "{e}");
    // Removed, the next image upload stores it again.
    repo.delete(&victim).await.unwrap();
    let r = upload::upload_image(
        &repo,
        "v0",
        &MetaState::new(MetaSnap::clean(Gid(5)), 1005),
        &img_path,
        &opts(),
        &stats,
    )
    .await
    .unwrap();
    assert_eq!(r.new_chunks, 1, "the missing chunk uploaded again");

    // gc: an orphan (a chunk of an image whose upload never finished) stays within the grace
    // period, goes after it; referenced chunks all stay.
    let orphan = noise(CHUNK as usize, 9);
    let h = *blake3::hash(&orphan).as_bytes();
    let obj = walb_repo::frame::encode(
        walb_repo::frame::Kind::Chunk,
        &orphan,
        walb_repo::frame::Codec::Zstd,
        3,
    )
    .unwrap();
    repo.put(&layout::chunk(&h), obj).await.unwrap();
    let kept = gc::gc(&repo, Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!((kept.swept, kept.young), (0, 1));
    let swept = gc::gc(&repo, Duration::ZERO, false).await.unwrap();
    assert_eq!(swept.swept, 1);
    assert!(!repo.exists(&layout::chunk(&h)).await.unwrap());
    let v = verify::verify(&repo, true, 4).await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(restored(&repo, "v0", 1, out.path()).await.unwrap(), want);

    // Pruning to the newest image: the older one and the diff before it go; what is left
    // restores; the chunks stay while v1's image and the kept one name them.
    let p = walb_repo::prune::prune(&repo, "v0", 1).await.unwrap();
    assert_eq!((p.images.len(), p.wdiffs), (1, 1));
    let snaps = list::snapshots(&repo, "v0").await.unwrap();
    assert_eq!(snaps.iter().map(|s| s.gid.0).collect::<Vec<_>>(), vec![5]);
    assert_eq!(gc::gc(&repo, Duration::ZERO, false).await.unwrap().swept, 0);
    assert_eq!(restored(&repo, "v0", 5, out.path()).await.unwrap(), img);

    // One writer per volume.
    lease::acquire(&repo, "v0", "a0", Duration::from_secs(60))
        .await
        .unwrap();
    lease::acquire(&repo, "v0", "a0", Duration::from_secs(60))
        .await
        .unwrap();
    match lease::acquire(&repo, "v0", "a1", Duration::from_secs(60)).await {
        Err(Error::Leased { holder, .. }) => assert_eq!(holder, "a0"),
        r => panic!("a1 took a0's lease: {r:?}"),
    }
    lease::release(&repo, "v0", "a0").await.unwrap();
    lease::acquire(&repo, "v0", "a1", Duration::from_secs(60))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_wdiff_is_streamed_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("repo").display());
    let repo = Repo::open(&url).unwrap();
    let stats = Stats::default();
    // A 40 MiB image of zeros (no chunk stored) and a wdiff of 36 MiB of noise over it.
    let img_path = dir.path().join("img");
    std::fs::File::create(&img_path)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let s0 = MetaState::new(MetaSnap::clean(Gid(0)), 1000);
    let r = upload::upload_image(&repo, "v0", &s0, &img_path, &opts(), &stats)
        .await
        .unwrap();
    assert_eq!(r.new_chunks, 0);
    let patch = noise(36 << 20, 3);
    let wd = dir.path().join("d01");
    wdiff(&wd, 1 << 20, &patch);
    assert!(std::fs::metadata(&wd).unwrap().len() > upload::STREAM_WDIFF);
    let mut d = MetaDiff::clean(0, 1).unwrap();
    d.timestamp = 1001;
    let up = upload::upload_wdiff(&repo, "v0", &d, &wd, &Rate::unlimited(), &stats)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(up, std::fs::metadata(&wd).unwrap().len() + 96);
    let v = verify::verify(&repo, true, 4).await.unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    let mut want = vec![0u8; 40 << 20];
    want[1 << 20..(1 << 20) + patch.len()].copy_from_slice(&patch);
    let out = tempfile::tempdir().unwrap();
    assert!(restored(&repo, "v0", 1, out.path()).await.unwrap() == want);
}

//! The wire side of a wdiff transfer (docs/formats.md §7.5): merge the given diffs on the fly
//! (newest wins) into one sorted wdiff and stream it to an archive's `WdiffTransfer`: Open{vol,
//! "proxy", uuid, size_lb, merged MetaDiff} → Accept | Reject(word) → Chunk* → Commit → Ack,
//! and the next batch's Open on the same stream before that Ack. The caller decides what an
//! outcome means for its queue.

use std::io::{self, Write};

use tokio::sync::mpsc;
use walb_core::meta::{merge_all, MetaDiff};
use walb_core::wdiff::{Cmpr, IndexedReader, Merger, RecStream, SortedWriter};
use walb_core::Uuid;
use walb_proto::archive_client::ArchiveClient;
use walb_proto::flow::{Flow, FlowError};
use walb_proto::wire;
use walb_proto::{frame, Commit, Frame, Open};

use crate::layout::HeldDiff;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The archive acknowledged the merged diff; `bytes` of wdiff were streamed.
    Accepted { bytes: u64 },
    /// The archive refused it with walb's rejection word.
    Rejected(String),
    /// Connection, protocol or local error.
    Failed(String),
}

/// A wdiff transfer stream to one archive, carrying merged batches one after the other: each
/// batch's Open, chunks and Commit leave without waiting for an answer, and `acked` reads the
/// answers in turn (docs/formats.md §7.5).
pub struct DiffFlow {
    flow: Flow,
}

/// One batch to send: the volume, its size, the diffs (oldest first, one uuid, a mergeable
/// chain) and the compression of the merged wdiff.
pub struct Batch<'a> {
    pub vol: &'a str,
    pub size_lb: u64,
    pub diffs: &'a [HeldDiff],
    pub cmpr: Cmpr,
}

impl DiffFlow {
    /// Connects to the archive at `addr` and streams the first batch; returns the flow and
    /// the bytes streamed.
    pub async fn start(addr: &str, batch: Batch<'_>) -> Result<(DiffFlow, u64), Outcome> {
        let (open, merged, readers) = prepare(&batch).await?;
        let channel = wire::connect(addr)
            .await
            .map_err(|e| Outcome::Failed(e.to_string()))?;
        let mut client = walb_proto::sized!(ArchiveClient::new(channel));
        // The merged diff follows the Open at once; a refusal ends the production when the
        // archive ends the flow, and the answer names it.
        let flow = Flow::start(open, move |s| async move { client.wdiff_transfer(s).await });
        let mut df = DiffFlow { flow };
        let bytes = df.stream(merged, readers, batch.cmpr).await?;
        Ok((df, bytes))
    }

    /// Streams another batch on the flow (the next in the chain) without waiting for the
    /// answers to those before it; returns the bytes streamed.
    pub async fn send(&mut self, batch: Batch<'_>) -> Result<u64, Outcome> {
        let (open, merged, readers) = prepare(&batch).await?;
        self.flow.send(open).await.map_err(outcome)?;
        self.stream(merged, readers, batch.cmpr).await
    }

    /// The answer to the oldest batch not answered yet.
    pub async fn acked(&mut self) -> Result<(), Outcome> {
        self.flow.acked().await.map_err(outcome)
    }

    /// The merged wdiff's chunks, then its Commit.
    async fn stream(
        &mut self,
        merged: MetaDiff,
        readers: (Uuid, Vec<IndexedReader>),
        cmpr: Cmpr,
    ) -> Result<u64, Outcome> {
        let (uuid, readers) = readers;
        let chunk_tx = self.flow.tx.clone();
        let produced =
            tokio::task::spawn_blocking(move || produce(readers, uuid, cmpr, chunk_tx)).await;
        let bytes = match produced {
            Ok(Ok(n)) => n,
            // A failure here (a diff that cannot be read): the stream ends with the flow.
            Ok(Err(e)) if !self.flow.tx.is_closed() => return Err(Outcome::Failed(e)),
            // The archive ended the stream: its answer says more than a closed channel.
            Ok(Err(e)) => {
                return Err(match self.flow.why_ended().await {
                    FlowError::Rejected(word) => Outcome::Rejected(word),
                    FlowError::Transport(st) => Outcome::Failed(format!("{e} ({st})")),
                })
            }
            Err(e) => return Err(Outcome::Failed(format!("merge task: {e}"))),
        };
        let commit = Commit {
            diff: merged.to_bytes().into(),
            ..Default::default()
        };
        self.flow
            .send(wire::frame(frame::Kind::Commit(commit)))
            .await
            .map_err(outcome)?;
        Ok(bytes)
    }
}

/// A batch's Open frame, merged MetaDiff and opened diffs.
async fn prepare(
    batch: &Batch<'_>,
) -> Result<(Frame, MetaDiff, (Uuid, Vec<IndexedReader>)), Outcome> {
    let metas: Vec<_> = batch.diffs.iter().map(|d| d.meta).collect();
    let Some(merged) = merge_all(&metas) else {
        return Err(Outcome::Failed(format!(
            "the {} diffs to send do not form a mergeable chain",
            batch.diffs.len()
        )));
    };
    let paths: Vec<_> = batch.diffs.iter().map(|d| d.path.clone()).collect();
    let readers = match tokio::task::spawn_blocking(move || open_all(&paths)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(Outcome::Failed(e)),
        Err(e) => return Err(Outcome::Failed(format!("open diffs: {e}"))),
    };
    let open = Open {
        vol: batch.vol.to_string(),
        host_type: "proxy".into(),
        uuid: readers.0 .0.to_vec().into(),
        size_lb: batch.size_lb,
        diff: merged.to_bytes().into(),
        ..Default::default()
    };
    Ok((wire::frame(frame::Kind::Open(open)), merged, readers))
}

fn outcome(e: FlowError) -> Outcome {
    match e {
        FlowError::Rejected(w) => Outcome::Rejected(w),
        FlowError::Transport(t) => Outcome::Failed(format!("archive: {t}")),
    }
}

/// Opens the diffs and checks they share one uuid.
fn open_all(paths: &[std::path::PathBuf]) -> Result<(Uuid, Vec<IndexedReader>), String> {
    let mut uuid = None;
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let r = IndexedReader::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let u = r.header().uuid;
        if *uuid.get_or_insert(u) != u {
            return Err(format!(
                "{}: uuid {u} differs from the first diff's",
                p.display()
            ));
        }
        out.push(r);
    }
    let uuid = uuid.ok_or("no diff to send")?;
    Ok((uuid, out))
}

/// Merges the readers into a sorted wdiff cut into chunk frames; returns the bytes produced.
fn produce(
    readers: Vec<IndexedReader>,
    uuid: Uuid,
    cmpr: Cmpr,
    tx: mpsc::Sender<Frame>,
) -> Result<u64, String> {
    let inputs: Vec<RecStream> = readers
        .into_iter()
        .map(|r| Box::new(r) as RecStream)
        .collect();
    let sink = ChunkSink {
        buf: Vec::with_capacity(wire::CHUNK),
        tx,
        total: 0,
    };
    let mut w = SortedWriter::new(sink, uuid, cmpr).map_err(|e| e.to_string())?;
    for r in Merger::new(inputs) {
        let r = r.map_err(|e| format!("merge: {e}"))?;
        w.push(r).map_err(|e| e.to_string())?;
    }
    let sink = w.finish().map_err(|e| e.to_string())?;
    Ok(sink.total)
}

/// Cuts a byte stream into chunk frames of `wire::CHUNK` bytes.
struct ChunkSink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Frame>,
    total: u64,
}

impl ChunkSink {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(wire::CHUNK));
        self.total += data.len() as u64;
        self.tx
            .blocking_send(wire::chunk(data))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the transfer stream closed"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = b.len().min(wire::CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == wire::CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use walb_core::source::BytesSource;
    use walb_core::wdiff::{Body, Codec, DiffRec, IndexedWriter, SortedReader};

    use super::*;

    fn rec(addr: u64, blocks: u32, fill: u8) -> DiffRec {
        let body = if fill == 0 {
            Body::AllZero
        } else {
            Body::Data(Bytes::from(vec![fill; blocks as usize * 512]))
        };
        DiffRec { addr, blocks, body }
    }

    fn indexed(path: &std::path::Path, uuid: Uuid, recs: &[DiffRec]) {
        let f = std::fs::File::create(path).unwrap();
        let mut w = IndexedWriter::new(f, uuid, Cmpr::NONE).unwrap();
        for r in recs {
            w.add(r.clone()).unwrap();
        }
        w.finish().unwrap();
    }

    /// Per-LB fill byte (None: untouched), applying `recs` in order.
    fn lbs(recs: &[DiffRec], n: usize) -> Vec<Option<u8>> {
        let mut v = vec![None; n];
        for r in recs {
            for i in 0..r.blocks as usize {
                v[r.addr as usize + i] = Some(match &r.body {
                    Body::Data(d) => d[i * 512],
                    _ => 0,
                });
            }
        }
        v
    }

    #[test]
    fn produce_merges_newest_wins_into_a_valid_sorted_wdiff_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let uuid = Uuid([7; 16]);
        // Large enough to need several 1 MiB chunks; overlaps every way.
        let old = vec![rec(0, 2048, 1), rec(4096, 2048, 2), rec(9000, 100, 3)];
        let new = vec![rec(1000, 500, 4), rec(4000, 200, 0), rec(9050, 100, 5)];
        let (p0, p1) = (dir.path().join("0"), dir.path().join("1"));
        indexed(&p0, uuid, &old);
        indexed(&p1, uuid, &new);
        let (u, readers) = open_all(&[p0, p1]).unwrap();
        assert_eq!(u, uuid);
        let (tx, mut rx) = mpsc::channel(1000);
        let total = produce(readers, uuid, Cmpr::new(Codec::Zstd, 1), tx).unwrap();
        let mut file = Vec::new();
        let mut n = 0;
        while let Ok(f) = rx.try_recv() {
            let Some(frame::Kind::Chunk(c)) = f.kind else {
                panic!("not a chunk")
            };
            assert!(c.data.len() <= wire::CHUNK);
            file.extend_from_slice(wire::check_chunk(&c).unwrap());
            n += 1;
        }
        assert_eq!(file.len() as u64, total);
        let (h, r) = SortedReader::open(Box::new(BytesSource::new(file.into()))).unwrap();
        assert_eq!(h.uuid, uuid);
        let got: Vec<DiffRec> = r.map(|x| x.unwrap()).collect();
        let all: Vec<DiffRec> = old.iter().chain(&new).cloned().collect();
        assert_eq!(lbs(&got, 10_000), lbs(&all, 10_000));
        // Compressible data: fewer bytes than raw, still cut into chunks when raw.
        assert!(n >= 1);
        let (tx, mut rx) = mpsc::channel(1000);
        let dir2 = tempfile::tempdir().unwrap();
        let p = dir2.path().join("x");
        indexed(&p, uuid, &old);
        let (_, readers) = open_all(&[p]).unwrap();
        produce(readers, uuid, Cmpr::NONE, tx).unwrap();
        let mut chunks = 0;
        while rx.try_recv().is_ok() {
            chunks += 1;
        }
        assert!(chunks >= 2, "2 MiB of raw data in {chunks} chunks");
    }

    #[test]
    fn diffs_of_different_uuids_are_not_sent_together() {
        let dir = tempfile::tempdir().unwrap();
        let (p0, p1) = (dir.path().join("0"), dir.path().join("1"));
        indexed(&p0, Uuid([1; 16]), &[rec(0, 8, 1)]);
        indexed(&p1, Uuid([2; 16]), &[rec(0, 8, 1)]);
        let e = open_all(&[p0, p1]).err().unwrap();
        assert!(e.contains("differs"), "{e}");
    }
}

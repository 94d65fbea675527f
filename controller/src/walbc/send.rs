//! Sending a wdiff file to an archive by hand, as a proxy would (walb-tools' wdiff-send): for
//! checking an archive's answers and debugging a pipeline.

use std::path::Path;

use anyhow::{Context, Result};
use bytes::Bytes;
use walb_core::meta::{MetaDiff, MetaSnap};
use walb_core::wdiff::{Cmpr, Codec, SortedWriter, WdiffReader};
use walb_core::{Gid, Uuid};
use walb_proto::archive_client::ArchiveClient;
use walb_proto::flow::{Flow, FlowError};
use walb_proto::{frame, wire, Commit, Open};

pub struct WdiffSend {
    pub vol: String,
    /// Replaces the file's own device uuid (`--unsafe-stamp-uuid`): the archive then takes
    /// the file as this volume's data whatever device it came from.
    pub stamp_uuid: Option<Uuid>,
    pub gid_b: u64,
    pub gid_e: u64,
    pub size_lb: Option<u64>,
}

impl WdiffSend {
    /// Sends `file` (sorted or indexed; re-encoded as a sorted wdiff carrying its own device
    /// uuid, or the stamped one). Returns `accept` or the rejection word.
    pub async fn run(&self, addr: &str, file: &Path) -> Result<String> {
        let (data, end_lb, uuid) = self.encode(file)?;
        let diff = MetaDiff::new(
            MetaSnap::clean(Gid(self.gid_b)),
            MetaSnap::clean(Gid(self.gid_e)),
        )?;
        let open = Open {
            vol: self.vol.clone(),
            host_type: "proxy".into(),
            uuid: Bytes::copy_from_slice(&uuid.0),
            size_lb: self.size_lb.unwrap_or(end_lb),
            diff: diff.to_bytes().into(),
            ..Default::default()
        };
        let ch = wire::connect(addr).await?;
        let mut client = walb_proto::sized!(ArchiveClient::new(ch));
        let mut flow = match Flow::open(wire::frame(frame::Kind::Open(open)), |s| {
            client.wdiff_transfer(s)
        })
        .await
        {
            Ok(f) => f,
            Err(FlowError::Rejected(r)) => return Ok(r),
            Err(e) => return Err(e.into()),
        };
        flow.send_bytes(data).await?;
        match flow
            .commit(wire::frame(frame::Kind::Commit(Commit::default())))
            .await
        {
            Ok(()) => Ok("accept".into()),
            Err(FlowError::Rejected(r)) => Ok(r),
            Err(e) => Err(e.into()),
        }
    }

    /// The file's records as a sorted wdiff, the end of its highest record, and the uuid it
    /// carries.
    fn encode(&self, file: &Path) -> Result<(Bytes, u64, Uuid)> {
        let r = WdiffReader::open(file).with_context(|| format!("open {}", file.display()))?;
        let uuid = self.stamp_uuid.unwrap_or(r.uuid());
        let mut w = SortedWriter::new(Vec::new(), uuid, Cmpr::new(Codec::None, 0))?;
        let mut end = 0;
        for rec in r {
            let rec = rec.with_context(|| format!("read {}", file.display()))?;
            end = end.max(rec.end());
            w.push(rec)?;
        }
        Ok((Bytes::from(w.finish()?), end, uuid))
    }
}

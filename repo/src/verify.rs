//! `walbc repo verify` (docs/repository.md, "Verify"): every object's frame and checksum,
//! every index's chunks present; deep: every chunk decompressed and hashed against its name,
//! every wdiff read through its own checksums.

use std::collections::HashSet;

use futures::StreamExt;
use object_store::path::Path;
use object_store::ObjectMeta;

use crate::error::{Error, Result};
use crate::frame::{self, Kind};
use crate::index::Index;
use crate::layout;
use crate::store::Repo;
use crate::upload::check_wdiff;

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub chunks: usize,
    pub indexes: usize,
    pub wdiffs: usize,
    pub bytes: u64,
    /// One line per damaged or missing object.
    pub problems: Vec<String>,
}

enum What {
    Chunk([u8; 32]),
    Index,
    Wdiff,
    Other,
}

fn what(p: &Path) -> What {
    let parts: Vec<_> = p.parts().collect();
    match parts.as_slice() {
        [c, _] if c.as_ref() == layout::CHUNKS => {
            layout::parse_chunk(p).map_or(What::Other, What::Chunk)
        }
        [v, _, d, _] if v.as_ref() == layout::VOLS && d.as_ref() == "images" => What::Index,
        [v, _, d, _] if v.as_ref() == layout::VOLS && d.as_ref() == "wdiffs" => What::Wdiff,
        _ => What::Other,
    }
}

pub async fn verify(repo: &Repo, deep: bool, parallel: usize) -> Result<Report> {
    let all: Vec<ObjectMeta> = repo.list(&Path::from("")).await?;
    let present: HashSet<[u8; 32]> = all
        .iter()
        .filter_map(|m| match what(&m.location) {
            What::Chunk(h) => Some(h),
            _ => None,
        })
        .collect();
    let mut rep = Report::default();
    let results: Vec<Result<(usize, u64, Vec<String>)>> = futures::stream::iter(all.iter())
        .map(|m| check_one(repo, m, deep, &present))
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    for r in results {
        let (kind, bytes, problems) = r?;
        match kind {
            1 => rep.chunks += 1,
            2 => rep.wdiffs += 1,
            3 => rep.indexes += 1,
            _ => {}
        }
        rep.bytes += bytes;
        rep.problems.extend(problems);
    }
    rep.problems.sort();
    Ok(rep)
}

/// (kind checked: 1 chunk, 2 wdiff, 3 index, 0 other; bytes read; problems found).
async fn check_one(
    repo: &Repo,
    m: &ObjectMeta,
    deep: bool,
    present: &HashSet<[u8; 32]>,
) -> Result<(usize, u64, Vec<String>)> {
    let key = m.location.to_string();
    let w = what(&m.location);
    if matches!(w, What::Other) {
        return Ok((0, 0, Vec::new()));
    }
    let obj = match repo.get(&m.location).await {
        Ok(o) => o,
        // Removed since the listing (gc, apply): nothing to check.
        Err(Error::NotFound(_)) => return Ok((0, 0, Vec::new())),
        Err(e) => return Err(e),
    };
    let bytes = obj.len() as u64;
    let mut problems = Vec::new();
    let kind = match w {
        What::Chunk(h) => {
            let r = if deep {
                frame::decode(&key, &obj, Kind::Chunk).and_then(|(hd, _)| {
                    if hd.raw_hash == h {
                        Ok(())
                    } else {
                        Err(Error::corrupt(&key, "content hash is not its name"))
                    }
                })
            } else {
                frame::check(&key, &obj, Kind::Chunk).map(|_| ())
            };
            if let Err(e) = r {
                problems.push(e.to_string());
            }
            1
        }
        What::Wdiff => {
            let r = if deep {
                frame::decode(&key, &obj, Kind::Wdiff).and_then(|(_, raw)| {
                    check_wdiff(&raw).map_err(|e| Error::corrupt(&key, e.to_string()))
                })
            } else {
                frame::check(&key, &obj, Kind::Wdiff).map(|_| ())
            };
            if let Err(e) = r {
                problems.push(e.to_string());
            }
            2
        }
        What::Index => {
            match Index::decode(&key, &obj) {
                Ok(ix) => {
                    let missing = ix
                        .chunks
                        .iter()
                        .flatten()
                        .filter(|h| !present.contains(*h))
                        .count();
                    if missing > 0 {
                        problems.push(format!("{key}: {missing} referenced chunks are missing"));
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
            3
        }
        What::Other => 0,
    };
    Ok((kind, bytes, problems))
}

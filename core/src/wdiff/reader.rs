//! Opens any wdiff file: the header decides sorted or indexed.

use std::path::Path;

use crate::error::Result;
use crate::source::{map_file, BytesSource};
use crate::types::Uuid;
use crate::wdiff::header::{FileHeader, Kind, FILE_HEADER_SIZE};
use crate::wdiff::indexed::IndexedReader;
use crate::wdiff::rec::DiffRec;
use crate::wdiff::sorted::SortedReader;

pub enum WdiffReader {
    Sorted(FileHeader, SortedReader),
    Indexed(IndexedReader),
}

impl WdiffReader {
    pub fn open(path: &Path) -> Result<WdiffReader> {
        let file = map_file(path)?;
        let header = FileHeader::decode(&file)?;
        Ok(match header.kind {
            Kind::Sorted => {
                let mut src = BytesSource::new(file);
                crate::source::Source::take_exact(&mut src, FILE_HEADER_SIZE, "wdiff file header")?;
                WdiffReader::Sorted(header, SortedReader::new(Box::new(src)))
            }
            Kind::Indexed => WdiffReader::Indexed(IndexedReader::new(file)?),
        })
    }

    pub fn header(&self) -> &FileHeader {
        match self {
            WdiffReader::Sorted(h, _) => h,
            WdiffReader::Indexed(r) => r.header(),
        }
    }

    pub fn uuid(&self) -> Uuid {
        self.header().uuid
    }

    pub fn kind(&self) -> Kind {
        self.header().kind
    }
}

impl Iterator for WdiffReader {
    type Item = Result<DiffRec>;
    fn next(&mut self) -> Option<Result<DiffRec>> {
        match self {
            WdiffReader::Sorted(_, r) => r.next(),
            WdiffReader::Indexed(r) => r.next(),
        }
    }
}

//! Streaming overlap-free merge of N sorted record streams, oldest first: the newest input wins
//! for every block. Memory holds one front record per input, never a whole file.

use crate::error::{Error, Result};
use crate::wdiff::rec::DiffRec;

pub type RecStream = Box<dyn Iterator<Item = Result<DiffRec>> + Send>;

struct Input {
    src: RecStream,
    front: Option<DiffRec>,
    last_end: u64,
}

impl Input {
    /// Makes `front` the first part of the stream at or after `cursor`.
    fn advance_to(&mut self, cursor: u64, idx: usize) -> Result<()> {
        loop {
            if let Some(f) = &self.front {
                if f.end() > cursor {
                    if f.addr < cursor {
                        self.front = Some(f.slice(cursor, f.end()));
                    }
                    return Ok(());
                }
            }
            match self.src.next().transpose()? {
                None => {
                    self.front = None;
                    return Ok(());
                }
                Some(r) => {
                    if r.addr < self.last_end {
                        return Err(Error::Invalid(format!(
                            "merge input {idx} is unsorted or overlapping: LB {} after LB {}",
                            r.addr, self.last_end
                        )));
                    }
                    self.last_end = r.end();
                    self.front = Some(r);
                }
            }
        }
    }
}

pub struct Merger {
    inputs: Vec<Input>,
    cursor: u64,
    failed: bool,
}

impl Merger {
    /// `inputs` ordered oldest first.
    pub fn new(inputs: Vec<RecStream>) -> Merger {
        Merger {
            inputs: inputs
                .into_iter()
                .map(|src| Input {
                    src,
                    front: None,
                    last_end: 0,
                })
                .collect(),
            cursor: 0,
            failed: false,
        }
    }

    fn step(&mut self) -> Result<Option<DiffRec>> {
        for (i, inp) in self.inputs.iter_mut().enumerate() {
            inp.advance_to(self.cursor, i)?;
        }
        // The lowest start; among inputs starting there the newest wins.
        let mut win: Option<(usize, u64)> = None;
        for (i, inp) in self.inputs.iter().enumerate() {
            if let Some(f) = &inp.front {
                if win.is_none_or(|(_, a)| f.addr <= a) {
                    win = Some((i, f.addr));
                }
            }
        }
        let Some((w, start)) = win else {
            return Ok(None);
        };
        let wf = self.inputs[w].front.as_ref().expect("winner has a front");
        // Cut where a newer input begins.
        let end = self.inputs[w + 1..]
            .iter()
            .filter_map(|inp| inp.front.as_ref().map(|f| f.addr))
            .fold(wf.end(), u64::min);
        let out = if end == wf.end() {
            self.inputs[w].front.take().expect("winner has a front")
        } else {
            wf.slice(start, end)
        };
        self.cursor = end;
        Ok(Some(out))
    }
}

impl Iterator for Merger {
    type Item = Result<DiffRec>;
    fn next(&mut self) -> Option<Result<DiffRec>> {
        if self.failed {
            return None;
        }
        let r = self.step().transpose();
        self.failed = matches!(r, Some(Err(_)));
        r
    }
}

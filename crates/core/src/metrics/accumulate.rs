//! Top-k hits accumulated batch by batch and keyed by image name: the engine
//! of the Python `ReaLAccumulator` for validation loops.
//!
//! A validation loop hands over one batch at a time, and between two batches
//! the model runs long enough to push the accumulator's own data out of the
//! caches. Per image a batch reads a slot of the name index, the stored name,
//! the image's record and its label set, each somewhere else in memory. Done
//! image by image, those cache misses queue one behind the other. So
//! [`HitAccumulator::add`] works in stages over the whole batch, each stage
//! prefetching what the next one reads, and the misses of a batch overlap.
//!
//! Scores are ranked by their best label ([`best_rank`]), which gives the
//! hits of every `k` at once and checks the row for NaN in the same pass;
//! top-k class indices are looked up in the set.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::PathBuf;

use crate::ids::join_key;
use crate::labels::LabelSets;
use crate::metrics::topk::best_rank;

/// Why a batch (or the accumulator) was refused. A refused batch leaves
/// nothing behind.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AccumulateError {
    /// `ks` is empty, holds a zero, or has more than 63 values.
    #[error("ks: expected 1 to 63 positive integers such as (1, 5)")]
    BadKs,
    /// A name of the order is not an image of the labels.
    #[error("order[{index}] = {name:?} is not an image of {path}")]
    OrderUnknown {
        /// Position in the order.
        index: usize,
        /// The name as given.
        name: String,
        /// The label file.
        path: PathBuf,
    },
    /// An image appears twice in the order.
    #[error("order[{index}] = {name:?} repeats order[{first}]")]
    OrderRepeat {
        /// Position of the repeat.
        index: usize,
        /// Position of the first occurrence.
        first: usize,
        /// The name as given.
        name: String,
    },
    /// A batch name is not an image of the labels.
    #[error("batch {batch}, row {row}: image {name:?} is not in {path}")]
    Unknown {
        /// Batch number (0-based).
        batch: usize,
        /// Row in the batch.
        row: usize,
        /// The name as given.
        name: String,
        /// The label file.
        path: PathBuf,
    },
    /// A batch name was added before (in this batch or an earlier one).
    #[error("batch {batch}, row {row}: image {name:?} was already added")]
    Duplicate {
        /// Batch number (0-based).
        batch: usize,
        /// Row in the batch.
        row: usize,
        /// The name as given.
        name: String,
    },
    /// A batch name differs from the order's name at its place.
    #[error("batch {batch}, row {row}: image {got:?}, but the order has {want:?} there (the loader's order differs)")]
    OrderMismatch {
        /// Batch number (0-based).
        batch: usize,
        /// Row in the batch.
        row: usize,
        /// The batch's name.
        got: String,
        /// The order's name.
        want: String,
    },
    /// The batch goes past the end of the order.
    #[error("batch {batch}: {rows} rows after {added} images, but the order has {len}")]
    PastOrder {
        /// Batch number (0-based).
        batch: usize,
        /// Rows of the batch.
        rows: usize,
        /// Images added before it.
        added: usize,
        /// Length of the order.
        len: usize,
    },
    /// The batch's names and prediction rows differ in number.
    #[error("batch {batch}: {names} names for {rows} prediction rows")]
    RowCount {
        /// Batch number (0-based).
        batch: usize,
        /// Names given.
        names: usize,
        /// Prediction rows.
        rows: usize,
    },
    /// No names and no order to take them from.
    #[error("batch {batch}: image names are required without an order")]
    NamesRequired {
        /// Batch number (0-based).
        batch: usize,
    },
    /// A score is NaN or infinite.
    #[error("batch {batch}, row {row}, column {column}: score {value} is not finite")]
    NonFinite {
        /// Batch number (0-based).
        batch: usize,
        /// Row in the batch.
        row: usize,
        /// Column of the first such score in the row.
        column: usize,
        /// The score.
        value: f32,
    },
    /// The predictions do not have the shape they claim.
    #[error("batch {batch}: {len} values are not rows of {width}")]
    Shape {
        /// Batch number (0-based).
        batch: usize,
        /// Values given.
        len: usize,
        /// Claimed row width.
        width: usize,
    },
    /// The largest `k` is larger than the row width.
    #[error("k = {k} is larger than the {width} {what} per image")]
    KTooLarge {
        /// The largest `k`.
        k: usize,
        /// Row width.
        width: usize,
        /// "classes" or "indices".
        what: &'static str,
    },
}

/// One batch of predictions, row-major.
#[derive(Debug, Clone, Copy)]
pub enum BatchRows<'a> {
    /// `[B, C]` scores (a NaN or an infinity refuses the batch).
    Scores {
        /// The values.
        values: &'a [f32],
        /// `C`.
        classes: usize,
    },
    /// `[B, w]` class indices, best first.
    TopK {
        /// The indices.
        indices: &'a [u32],
        /// `w`.
        width: usize,
    },
}

impl BatchRows<'_> {
    fn width(&self) -> usize {
        match self {
            BatchRows::Scores { classes, .. } => *classes,
            BatchRows::TopK { width, .. } => *width,
        }
    }

    fn len(&self) -> usize {
        match self {
            BatchRows::Scores { values, .. } => values.len(),
            BatchRows::TopK { indices, .. } => indices.len(),
        }
    }
}

/// Marks a slot of the name index as empty.
const EMPTY: u32 = u32::MAX;
/// The "added" bit of a record's state; bit `i` is a hit at `ks[i]`.
const SEEN: u64 = 1 << 63;

/// A slot of the open-addressing name index (16 bytes: four per cache line).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(16))]
struct Slot {
    /// High half of the name's hash.
    tag: u32,
    /// Image position, or [`EMPTY`].
    pos: u32,
    /// The name's bytes in the arena.
    key: u32,
    key_len: u32,
}

/// Per image: its state and where its label set and name are (32 bytes, so
/// a record never straddles a cache line).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Record {
    state: u64,
    labels: u32,
    n_labels: u32,
    key: u32,
    key_len: u32,
}

/// Hints the CPU to fetch the cache line at `p` (no effect elsewhere).
#[inline(always)]
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address.
    #[allow(unused_unsafe)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Top-k hits of a validation loop, batch by batch, keyed by image name.
///
/// Every name must be an image of the labels and come once; with an order
/// (the loader's file list), every batch must follow it. An image with an
/// empty label set counts as added but not in the totals (ReaL semantics).
#[derive(Debug)]
pub struct HitAccumulator {
    ks: Vec<usize>,
    path: PathBuf,
    /// Image names as written in the label file (for [`HitAccumulator::missing`]).
    names: Vec<String>,
    records: Vec<Record>,
    /// Every label set, one after another.
    labels: Vec<u32>,
    /// Every name's join key, one after another.
    arena: Vec<u8>,
    slots: Vec<Slot>,
    hasher: RandomState,
    /// With an order: its names as given, and their positions.
    order: Option<(Vec<String>, Vec<u32>)>,
    next: usize,
    batches: usize,
    /// Scratch of one batch: hashes, then positions.
    hashes: Vec<u64>,
    found: Vec<u32>,
}

impl HitAccumulator {
    /// An accumulator for `labels`, counting hits at each of `ks`; with
    /// `order`, batches must come in that order (and may leave out names).
    pub fn new<S: AsRef<str>>(labels: &LabelSets, ks: &[usize], order: Option<&[S]>) -> Result<Self, AccumulateError> {
        if ks.is_empty() || ks.contains(&0) || ks.len() > 63 {
            return Err(AccumulateError::BadKs);
        }
        let n = labels.names.len();
        let mut arena = Vec::with_capacity(labels.names.iter().map(|s| join_key(s).len()).sum());
        let mut flat = Vec::with_capacity(labels.sets.iter().map(Vec::len).sum());
        let mut records = Vec::with_capacity(n);
        for (name, set) in labels.names.iter().zip(&labels.sets) {
            let key = join_key(name).as_bytes();
            records.push(Record {
                state: 0,
                labels: flat.len() as u32,
                n_labels: set.len() as u32,
                key: arena.len() as u32,
                key_len: key.len() as u32,
            });
            arena.extend_from_slice(key);
            flat.extend_from_slice(set);
        }
        let cap = (2 * n).next_power_of_two().max(16);
        let empty = Slot { tag: 0, pos: EMPTY, key: 0, key_len: 0 };
        let mut acc = HitAccumulator {
            ks: ks.to_vec(),
            path: labels.path.clone(),
            names: labels.names.clone(),
            records,
            labels: flat,
            arena,
            slots: vec![empty; cap],
            hasher: RandomState::new(),
            order: None,
            next: 0,
            batches: 0,
            hashes: Vec::new(),
            found: Vec::new(),
        };
        // Label files have unique join keys (checked when they are read), so
        // every image gets its own slot.
        for (pos, r) in acc.records.iter().enumerate() {
            let key = &acc.arena[r.key as usize..(r.key + r.key_len) as usize];
            let h = acc.hasher.hash_one(key);
            let mut i = h as usize & (cap - 1);
            while acc.slots[i].pos != EMPTY {
                i = (i + 1) & (cap - 1);
            }
            acc.slots[i] = Slot { tag: (h >> 32) as u32, pos: pos as u32, key: r.key, key_len: r.key_len };
        }
        if let Some(order) = order {
            let mut first = vec![EMPTY; n];
            let mut positions = Vec::with_capacity(order.len());
            for (index, name) in order.iter().enumerate() {
                let name = name.as_ref();
                let pos = acc.lookup(join_key(name).as_bytes()).ok_or_else(|| AccumulateError::OrderUnknown {
                    index,
                    name: name.to_string(),
                    path: acc.path.clone(),
                })?;
                if first[pos as usize] != EMPTY {
                    return Err(AccumulateError::OrderRepeat {
                        index,
                        first: first[pos as usize] as usize,
                        name: name.to_string(),
                    });
                }
                first[pos as usize] = index as u32;
                positions.push(pos);
            }
            acc.order = Some((order.iter().map(|s| s.as_ref().to_string()).collect(), positions));
        }
        Ok(acc)
    }

    fn key(&self, r: &Record) -> &[u8] {
        &self.arena[r.key as usize..(r.key + r.key_len) as usize]
    }

    /// Position of a join key, probing from its home slot.
    fn lookup(&self, key: &[u8]) -> Option<u32> {
        let h = self.hasher.hash_one(key);
        self.probe(key, h, h as usize & (self.slots.len() - 1))
    }

    /// Position of `key` (hash `h`), probing from slot `i` on.
    fn probe(&self, key: &[u8], h: u64, mut i: usize) -> Option<u32> {
        let tag = (h >> 32) as u32;
        loop {
            let s = self.slots[i];
            if s.pos == EMPTY {
                return None;
            }
            if s.tag == tag && &self.arena[s.key as usize..(s.key + s.key_len) as usize] == key {
                return Some(s.pos);
            }
            i = (i + 1) & (self.slots.len() - 1);
        }
    }

    /// The `k`s counted.
    pub fn ks(&self) -> &[usize] {
        &self.ks
    }

    /// Batches added so far.
    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Adds one batch: its predictions and, without an order, the image
    /// names of its rows (with an order, names are optional and checked
    /// against it). A refused batch changes nothing.
    pub fn add<S: AsRef<str>>(&mut self, rows: BatchRows<'_>, names: Option<&[S]>) -> Result<(), AccumulateError> {
        let batch = self.batches;
        let width = rows.width();
        let kmax = self.ks.iter().copied().max().unwrap_or(1);
        if width == 0 || !rows.len().is_multiple_of(width) {
            return Err(AccumulateError::Shape { batch, len: rows.len(), width });
        }
        if kmax > width {
            return Err(match rows {
                BatchRows::Scores { .. } => AccumulateError::KTooLarge { k: kmax, width, what: "classes" },
                BatchRows::TopK { .. } => AccumulateError::KTooLarge { k: kmax, width, what: "indices" },
            });
        }
        let b = rows.len() / width;
        if let Some(n) = names {
            if n.len() != b {
                return Err(AccumulateError::RowCount { batch, names: n.len(), rows: b });
            }
        }
        let mut found = std::mem::take(&mut self.found);
        found.clear();
        let result = self
            .positions(batch, b, names, &mut found)
            .and_then(|()| self.mark(batch, names, &found))
            .and_then(|()| self.score(batch, rows, &found));
        if result.is_ok() {
            self.next += b;
            self.batches += 1;
        }
        self.found = found;
        result
    }

    /// Stage 1–2: the batch's positions into `found`, their records prefetched.
    fn positions<S: AsRef<str>>(
        &mut self,
        batch: usize,
        b: usize,
        names: Option<&[S]>,
        found: &mut Vec<u32>,
    ) -> Result<(), AccumulateError> {
        let mask = self.slots.len() - 1;
        if let Some((order, positions)) = &self.order {
            if self.next + b > positions.len() {
                return Err(AccumulateError::PastOrder { batch, rows: b, added: self.next, len: order.len() });
            }
            found.extend_from_slice(&positions[self.next..self.next + b]);
            for &p in found.iter() {
                prefetch(&self.records[p as usize]);
            }
            if let Some(names) = names {
                // The order's stored names, then the comparison.
                for &p in found.iter() {
                    prefetch(self.arena[self.records[p as usize].key as usize..].as_ptr());
                }
                for (r, (&p, n)) in found.iter().zip(names).enumerate() {
                    let n = n.as_ref();
                    if join_key(n).as_bytes() != self.key(&self.records[p as usize]) {
                        return Err(AccumulateError::OrderMismatch {
                            batch,
                            row: r,
                            got: n.to_string(),
                            want: order[self.next + r].clone(),
                        });
                    }
                }
            }
            return Ok(());
        }
        let Some(names) = names else {
            return Err(AccumulateError::NamesRequired { batch });
        };
        // Hash every name and ask for its home slot.
        let keys: Vec<&[u8]> = names.iter().map(|n| join_key(n.as_ref()).as_bytes()).collect();
        self.hashes.clear();
        for key in &keys {
            let h = self.hasher.hash_one(key);
            prefetch(&self.slots[h as usize & mask]);
            self.hashes.push(h);
        }
        // First tag match of each (kept as a slot index), and ask for its
        // stored name and record.
        for &h in &self.hashes {
            let tag = (h >> 32) as u32;
            let mut i = h as usize & mask;
            while self.slots[i].pos != EMPTY && self.slots[i].tag != tag {
                i = (i + 1) & mask;
            }
            let s = &self.slots[i];
            if s.pos != EMPTY {
                prefetch(self.arena[s.key as usize..].as_ptr());
                prefetch(&self.records[s.pos as usize]);
            }
            found.push(i as u32);
        }
        // Check the names (probing on where a tag matched another name).
        for (r, (slot, key)) in found.iter_mut().zip(keys).enumerate() {
            let s = self.slots[*slot as usize];
            let pos = if s.pos != EMPTY && &self.arena[s.key as usize..(s.key + s.key_len) as usize] == key {
                Some(s.pos)
            } else if s.pos == EMPTY {
                None
            } else {
                self.probe(key, self.hashes[r], (*slot as usize + 1) & mask)
            };
            *slot = pos.ok_or_else(|| AccumulateError::Unknown {
                batch,
                row: r,
                name: names[r].as_ref().to_string(),
                path: self.path.clone(),
            })?;
        }
        Ok(())
    }

    /// Undoes the marks (and any hits) of a refused batch's images: none of
    /// them was added before it.
    fn unmark(&mut self, found: &[u32]) {
        for &q in found {
            self.records[q as usize].state = 0;
        }
    }

    /// Stage 3: marks the batch's images added (refusing one added before,
    /// and undoing the marks on a refusal); asks for their label sets.
    fn mark<S: AsRef<str>>(&mut self, batch: usize, names: Option<&[S]>, found: &[u32]) -> Result<(), AccumulateError> {
        for (r, &p) in found.iter().enumerate() {
            let rec = &mut self.records[p as usize];
            if rec.state & SEEN != 0 {
                self.unmark(&found[..r]);
                let name = match names {
                    Some(n) => n[r].as_ref().to_string(),
                    None => self.names[p as usize].clone(),
                };
                return Err(AccumulateError::Duplicate { batch, row: r, name });
            }
            rec.state = SEEN;
            prefetch(self.labels[rec.labels as usize..].as_ptr());
        }
        Ok(())
    }

    /// Stage 4: the hits of every row; a row with a NaN or an infinity
    /// refuses the batch (and undoes its marks).
    fn score(&mut self, batch: usize, rows: BatchRows<'_>, found: &[u32]) -> Result<(), AccumulateError> {
        for (r, &p) in found.iter().enumerate() {
            let rec = self.records[p as usize];
            let set = &self.labels[rec.labels as usize..(rec.labels + rec.n_labels) as usize];
            let mut bits = SEEN;
            match rows {
                BatchRows::Scores { values, classes } => {
                    let row = &values[r * classes..(r + 1) * classes];
                    let rank = match best_rank(row, set) {
                        Ok(rank) => rank,
                        Err(column) => {
                            self.unmark(found);
                            return Err(AccumulateError::NonFinite { batch, row: r, column, value: row[column] });
                        }
                    };
                    for (ki, &k) in self.ks.iter().enumerate() {
                        bits |= u64::from(rank.is_some_and(|x| x < k)) << ki;
                    }
                }
                BatchRows::TopK { indices, width } => {
                    let row = &indices[r * width..(r + 1) * width];
                    for (ki, &k) in self.ks.iter().enumerate() {
                        bits |= u64::from(row[..k].iter().any(|c| set.binary_search(c).is_ok())) << ki;
                    }
                }
            }
            // An empty set has no hits: left out, as ReaL does.
            self.records[p as usize].state = if set.is_empty() { SEEN } else { bits };
        }
        Ok(())
    }

    /// Images added so far.
    pub fn count(&self) -> usize {
        self.records.iter().filter(|r| r.state & SEEN != 0).count()
    }

    /// Per k: `(k, correct, total)` over the images added (empty sets left out).
    pub fn counts(&self) -> Vec<(usize, u64, u64)> {
        let total = self.records.iter().filter(|r| r.state & SEEN != 0 && r.n_labels > 0).count() as u64;
        self.ks
            .iter()
            .enumerate()
            .map(|(ki, &k)| (k, self.records.iter().filter(|r| r.state & (1 << ki) != 0).count() as u64, total))
            .collect()
    }

    /// Names (as in the label file) of the images not added yet.
    pub fn missing(&self) -> Vec<String> {
        self.records.iter().zip(&self.names).filter(|(r, _)| r.state & SEEN == 0).map(|(_, n)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sets(n: usize, c: usize, seed: u64) -> (LabelSets, Vec<f32>) {
        let mut x = seed;
        let mut next = move || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        let names: Vec<String> = (0..n).map(|i| format!("dir/img_{i:05}.JPEG")).collect();
        let sets: Vec<Vec<u32>> = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    return Vec::new();
                }
                let mut s: Vec<u32> = (0..1 + next() % 3).map(|_| (next() % c as u64) as u32).collect();
                s.sort_unstable();
                s.dedup();
                s
            })
            .collect();
        // Coarse scores: many ties.
        let scores = (0..n * c).map(|_| (next() % 11) as f32 / 10.0).collect();
        (
            LabelSets::new(std::path::Path::new("l.json"), crate::labels::LabelFormat::GenericJson, names, sets)
                .unwrap(),
            scores,
        )
    }

    /// Rank by sorting: position of the best label when the row is sorted by
    /// score descending, ties broken by the lower column first.
    fn reference_hits(scores: &[f32], set: &[u32], k: usize) -> bool {
        let mut cols: Vec<usize> = (0..scores.len()).collect();
        cols.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap().then(a.cmp(&b)));
        cols[..k].iter().any(|&c| set.contains(&(c as u32)))
    }

    #[test]
    fn batches_in_any_order_count_as_sorting_does() {
        let (n, c) = (1000, 40);
        let (labels, scores) = sets(n, c, 3);
        let ks = [1, 3, 5];
        // A shuffled loader order, names given with other directories and
        // without extensions (joined by key).
        let mut perm: Vec<usize> = (0..n).collect();
        let mut x = 11u64;
        for i in (1..n).rev() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            perm.swap(i, (x >> 33) as usize % (i + 1));
        }
        let mut acc = HitAccumulator::new::<&str>(&labels, &ks, None).unwrap();
        let left_out = 37; // the tail is never added
        for chunk in perm[..n - left_out].chunks(64) {
            let names: Vec<String> = chunk.iter().map(|&i| format!("other/img_{i:05}")).collect();
            let rows: Vec<f32> = chunk.iter().flat_map(|&i| scores[i * c..(i + 1) * c].iter().copied()).collect();
            acc.add(BatchRows::Scores { values: &rows, classes: c }, Some(&names)).unwrap();
        }
        let added = &perm[..n - left_out];
        let got = acc.counts();
        for (ki, &k) in ks.iter().enumerate() {
            let with = added.iter().filter(|&&i| !labels.sets[i].is_empty());
            let correct = with.clone().filter(|&&i| reference_hits(&scores[i * c..(i + 1) * c], &labels.sets[i], k));
            assert_eq!(got[ki], (k, correct.count() as u64, with.count() as u64));
        }
        assert_eq!(acc.count(), n - left_out);
        let mut missing: Vec<String> = perm[n - left_out..].iter().map(|&i| labels.names[i].clone()).collect();
        missing.sort();
        assert_eq!(acc.missing(), missing);
    }

    #[test]
    fn top_k_indices_and_an_order_without_names() {
        let (n, c) = (300, 25);
        let (labels, scores) = sets(n, c, 5);
        let order: Vec<String> = (0..n).rev().map(|i| format!("img_{i:05}.png")).collect();
        let mut acc = HitAccumulator::new(&labels, &[1, 2], Some(&order)).unwrap();
        let top: Vec<u32> = (0..n)
            .rev()
            .flat_map(|i| {
                let row = &scores[i * c..(i + 1) * c];
                let mut cols: Vec<u32> = (0..c as u32).collect();
                cols.sort_by(|&a, &b| row[b as usize].partial_cmp(&row[a as usize]).unwrap().then(a.cmp(&b)));
                cols.truncate(3);
                cols
            })
            .collect();
        for s in (0..n).step_by(100) {
            acc.add::<&str>(BatchRows::TopK { indices: &top[s * 3..(s + 100) * 3], width: 3 }, None).unwrap();
        }
        for (ki, k) in [1, 2].into_iter().enumerate() {
            let with = (0..n).filter(|&i| !labels.sets[i].is_empty());
            let correct = with.clone().filter(|&i| reference_hits(&scores[i * c..(i + 1) * c], &labels.sets[i], k));
            assert_eq!(acc.counts()[ki], (k, correct.count() as u64, with.count() as u64));
        }
        let err = acc.add::<&str>(BatchRows::TopK { indices: &top[..3], width: 3 }, None).unwrap_err();
        assert_eq!(err, AccumulateError::PastOrder { batch: 3, rows: 1, added: 300, len: 300 });
    }

    #[test]
    fn refusals_leave_nothing_behind() {
        let (labels, scores) = sets(50, 10, 9);
        let row = |i: usize| scores[i * 10..(i + 1) * 10].to_vec();
        let mut acc = HitAccumulator::new::<&str>(&labels, &[1], None).unwrap();
        let rows: Vec<f32> = (0..3).flat_map(row).collect();
        fn batch(rows: &[f32]) -> BatchRows<'_> {
            BatchRows::Scores { values: rows, classes: 10 }
        }
        let err = acc.add(batch(&rows), Some(&["img_00001", "img_00002", "nope.JPEG"])).unwrap_err();
        assert!(matches!(err, AccumulateError::Unknown { batch: 0, row: 2, ref name, .. } if name == "nope.JPEG"));
        assert_eq!(err.to_string(), "batch 0, row 2: image \"nope.JPEG\" is not in l.json");
        let err = acc.add(batch(&rows), Some(&["img_00001", "img_00002", "img_00001"])).unwrap_err();
        assert_eq!(err, AccumulateError::Duplicate { batch: 0, row: 2, name: "img_00001".into() });
        assert_eq!(acc.count(), 0);
        let err = acc.add(batch(&rows), Some(&["img_00001"])).unwrap_err();
        assert_eq!(err, AccumulateError::RowCount { batch: 0, names: 1, rows: 3 });
        assert_eq!(acc.add::<&str>(batch(&rows), None).unwrap_err(), AccumulateError::NamesRequired { batch: 0 });
        acc.add(batch(&rows), Some(&["img_00001", "img_00002", "img_00003"])).unwrap();
        assert_eq!(acc.count(), 3);
        let err = acc.add(batch(&rows[..10]), Some(&["x/img_00002.jpg"])).unwrap_err();
        assert_eq!(err, AccumulateError::Duplicate { batch: 1, row: 0, name: "x/img_00002.jpg".into() });
        assert_eq!(
            acc.add(BatchRows::Scores { values: &rows[..7], classes: 2 }, Some(&["a"; 3])).unwrap_err(),
            AccumulateError::Shape { batch: 1, len: 7, width: 2 }
        );
        let mut bad = rows.clone();
        bad[13] = f32::NAN; // row 1, column 3
        let err = acc.add(batch(&bad[..20]), Some(&["img_00004", "img_00005"])).unwrap_err();
        assert_eq!(err.to_string(), "batch 1, row 1, column 3: score NaN is not finite");
        assert_eq!(acc.count(), 3);
        assert!(labels.sets[7].is_empty());
        let err = acc.add(batch(&bad[10..20]), Some(&["img_00007"])).unwrap_err();
        assert!(matches!(err, AccumulateError::NonFinite { row: 0, column: 3, .. }), "{err:?}");
        acc.add(batch(&rows[..20]), Some(&["img_00004", "img_00005"])).unwrap();
        assert_eq!(acc.count(), 5);
        let mut acc5 = HitAccumulator::new::<&str>(&labels, &[5], None).unwrap();
        assert_eq!(
            acc5.add(BatchRows::TopK { indices: &[1, 2], width: 2 }, Some(&["img_00000"])).unwrap_err().to_string(),
            "k = 5 is larger than the 2 indices per image"
        );
        assert_eq!(HitAccumulator::new::<&str>(&labels, &[], None).unwrap_err(), AccumulateError::BadKs);
        assert_eq!(HitAccumulator::new::<&str>(&labels, &[1, 0], None).unwrap_err(), AccumulateError::BadKs);
    }

    #[test]
    fn orders_are_checked() {
        let (labels, scores) = sets(20, 4, 1);
        let e = HitAccumulator::new(&labels, &[1], Some(&["img_00003", "img_00099"])).unwrap_err();
        assert!(matches!(e, AccumulateError::OrderUnknown { index: 1, .. }), "{e:?}");
        let e = HitAccumulator::new(&labels, &[1], Some(&["img_00003", "a/img_00003.jpg"])).unwrap_err();
        assert_eq!(e.to_string(), "order[1] = \"a/img_00003.jpg\" repeats order[0]");
        let order = ["img_00003", "img_00004", "img_00005"];
        let mut acc = HitAccumulator::new(&labels, &[1], Some(&order)).unwrap();
        let batch = BatchRows::Scores { values: &scores[..8], classes: 4 };
        let e = acc.add(batch, Some(&["img_00003", "img_00005"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "batch 0, row 1: image \"img_00005\", but the order has \"img_00004\" there (the loader's order differs)"
        );
        assert_eq!(acc.count(), 0);
        acc.add(batch, Some(&["d/img_00003.JPEG", "img_00004"])).unwrap();
        assert_eq!(acc.count(), 2);
    }
}

//! The streaming machinery shared by the readers: read options, a byte
//! counter for progress, an order-preserving parallel map, and a splitter
//! that cuts a JSON array into its elements without parsing them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::{Error, Result};

/// How a release is read.
#[derive(Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// Skip malformed records (counted in the [`ReadSummary`](crate::ReadSummary))
    /// instead of stopping at the first one.
    pub skip_bad: bool,
    /// Parser threads; 0 = one per available core. The file is read (and
    /// decompressed) by one more thread; records reach the callback in file
    /// order whatever the number of threads.
    pub threads: usize,
    /// Called on the calling thread, now and then, with the number of bytes
    /// of the input file consumed so far (for a progress bar).
    pub progress: Option<&'a dyn Fn(u64)>,
}

impl std::fmt::Debug for ReadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOptions")
            .field("skip_bad", &self.skip_bad)
            .field("threads", &self.threads)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl ReadOptions<'_> {
    pub(crate) fn worker_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        }
    }
}

/// A reader that counts the bytes read through it.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Items per batch handed to a worker.
const BATCH: usize = 64;

/// Runs `produce` on its own thread (it pushes items and stops early when the
/// push returns `false`), maps the items with `work` on `threads` worker
/// threads, and hands the results to `consume` on the calling thread in the
/// order the items were produced. The first error of `consume` stops
/// everything and is returned; otherwise the result of `produce` (its error
/// comes after every item pushed before it was consumed). Memory is bounded
/// by a few batches per thread.
pub(crate) fn ordered_map<I, O, P, W, C>(
    threads: usize,
    count: Option<(&AtomicU64, &dyn Fn(u64))>,
    produce: P,
    work: W,
    mut consume: C,
) -> Result<()>
where
    I: Send,
    O: Send,
    P: FnOnce(&mut dyn FnMut(I) -> bool) -> Result<()> + Send,
    W: Fn(I) -> O + Sync,
    C: FnMut(O) -> Result<()>,
{
    let threads = threads.max(1);
    std::thread::scope(|s| {
        let (in_tx, in_rx) = mpsc::sync_channel::<(u64, Vec<I>)>(threads * 2);
        let (out_tx, out_rx) = mpsc::sync_channel::<(u64, Vec<O>)>(threads * 2);
        let producer = s.spawn(move || {
            let mut seq = 0u64;
            let mut batch = Vec::with_capacity(BATCH);
            let mut open = true;
            let r = produce(&mut |item| {
                if open {
                    batch.push(item);
                    if batch.len() == BATCH {
                        open = in_tx.send((seq, std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_ok();
                        seq += 1;
                    }
                }
                open
            });
            if open && !batch.is_empty() {
                let _ = in_tx.send((seq, batch));
            }
            r
        });
        // The workers own the receiving end: when they all stop, the
        // producer's next send fails and it stops too.
        let in_rx = Arc::new(Mutex::new(in_rx));
        let work = &work;
        for _ in 0..threads {
            let out_tx = out_tx.clone();
            let in_rx = Arc::clone(&in_rx);
            s.spawn(move || loop {
                let msg = in_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok((seq, items)) = msg else { break };
                let outs: Vec<O> = items.into_iter().map(work).collect();
                if out_tx.send((seq, outs)).is_err() {
                    break;
                }
            });
        }
        drop(in_rx);
        drop(out_tx);
        let mut pending: BTreeMap<u64, Vec<O>> = BTreeMap::new();
        let mut next = 0u64;
        let mut failed = None;
        'recv: while let Ok((seq, outs)) = out_rx.recv() {
            pending.insert(seq, outs);
            while let Some(outs) = pending.remove(&next) {
                next += 1;
                for o in outs {
                    if let Err(e) = consume(o) {
                        failed = Some(e);
                        break 'recv;
                    }
                }
            }
            if let Some((c, f)) = count {
                f(c.load(Ordering::Relaxed));
            }
        }
        drop(out_rx);
        let produced =
            producer.join().unwrap_or_else(|_| Err(Error::Invalid("the reading thread stopped unexpectedly".into())));
        match failed {
            Some(e) => Err(e),
            None => produced,
        }
    })
}

/// One element of a JSON array, as raw bytes, with where it starts.
pub(crate) struct RawElement {
    /// 0-based index in the array.
    pub(crate) index: u64,
    /// 1-based line of its first byte.
    pub(crate) line: u64,
    /// 1-based column (in bytes) of its first byte.
    pub(crate) column: u64,
    /// The element's text.
    pub(crate) bytes: Vec<u8>,
}

impl RawElement {
    /// The absolute position of a `serde_json` error inside this element.
    pub(crate) fn position(&self, e: &serde_json::Error) -> String {
        let line = self.line + e.line() as u64 - 1;
        let column = if e.line() <= 1 { self.column + e.column() as u64 - 1 } else { e.column() as u64 };
        format!("line {line}, column {column}")
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// Before the opening `[`.
    Start,
    /// After `[` or `,`: an element (or, right after `[`, the closing `]`).
    Before { first: bool },
    /// Inside an element.
    In,
    /// After an element: `,` or `]`.
    After,
    /// After the closing `]`: only whitespace.
    End,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// An object or array: ends when the bracket depth returns to 0.
    Nested,
    /// A string: ends at the closing quote.
    Str,
    /// A number or literal: ends before whitespace, `,` or `]`.
    Bare,
}

fn shown(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Bytes that matter outside strings inside a nested element.
const STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// Line and column bookkeeping, counted lazily with `memchr` (only the
/// positions of element starts and errors are ever asked for).
struct Lines {
    /// 1-based line of the byte at `upto`.
    line: u64,
    /// Absolute offset of the first byte of that line.
    line_start: u64,
    /// Absolute offset of the current chunk's first byte.
    base: u64,
    /// Index in the current chunk up to which newlines are counted.
    upto: usize,
}

impl Lines {
    /// Counts the newlines of `chunk[self.upto..i]`.
    fn advance(&mut self, chunk: &[u8], i: usize) {
        if i <= self.upto {
            return;
        }
        for p in memchr::memchr_iter(b'\n', &chunk[self.upto..i]) {
            self.line += 1;
            self.line_start = self.base + (self.upto + p) as u64 + 1;
        }
        self.upto = i;
    }

    /// (line, column) of `chunk[i]`.
    fn at(&mut self, chunk: &[u8], i: usize) -> (u64, u64) {
        self.advance(chunk, i);
        (self.line, self.base + i as u64 - self.line_start + 1)
    }

    /// Moves on to the next chunk after `chunk`.
    fn next_chunk(&mut self, chunk: &[u8]) {
        self.advance(chunk, chunk.len());
        self.base += chunk.len() as u64;
        self.upto = 0;
    }
}

/// Splits the top-level JSON array read from `r` into its elements and
/// pushes them one by one (stopping when `push` returns `false`). Strings,
/// nesting and separators are tracked, not the elements' contents: those are
/// left to the element parser. A file that is not one array, a missing
/// separator or a truncated file is an error naming the line and column.
pub(crate) fn split_json_array(mut r: impl Read, path: &Path, push: &mut dyn FnMut(RawElement) -> bool) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = Lines { line: 1, line_start: 0, base: 0, upto: 0 };
    let mut phase = Phase::Start;
    let mut kind = Kind::Nested;
    let (mut depth, mut in_str, mut esc_pending) = (0u32, false, false);
    let mut cur: Vec<u8> = Vec::new();
    let (mut index, mut start_line, mut start_col) = (0u64, 0u64, 0u64);
    let at = |(l, c): (u64, u64)| format!("line {l}, column {c}");
    let mut chunk_len = 0usize;
    loop {
        lines.next_chunk(&buf[..chunk_len]);
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                chunk_len = 0;
                continue;
            }
            Err(e) => return Err(Error::format(path, at(lines.at(&[], 0)), format!("cannot read: {e}"))),
        };
        chunk_len = n;
        let chunk = &buf[..n];
        let mut i = 0usize;
        while i < n {
            if phase == Phase::In {
                let begin = i;
                let mut done = false;
                if esc_pending {
                    // The byte after a backslash that ended the previous chunk.
                    esc_pending = false;
                    i += 1;
                }
                match kind {
                    Kind::Bare => {
                        while i < n {
                            let b = chunk[i];
                            if b.is_ascii_whitespace() || b == b',' || b == b']' {
                                // Not part of the element: looked at again in `After`.
                                done = true;
                                break;
                            }
                            i += 1;
                        }
                    }
                    _ => {
                        while i < n {
                            if in_str {
                                // Skip to the next quote or backslash.
                                match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                                    None => i = n,
                                    Some(p) => {
                                        i += p;
                                        if chunk[i] == b'\\' {
                                            // Skip the escaped byte, which may open the next chunk.
                                            i += 2;
                                            if i > n {
                                                i = n;
                                                esc_pending = true;
                                            }
                                        } else {
                                            in_str = false;
                                            i += 1;
                                            if kind == Kind::Str {
                                                done = true;
                                                break;
                                            }
                                        }
                                    }
                                }
                            } else {
                                while i < n && !STRUCTURAL[chunk[i] as usize] {
                                    i += 1;
                                }
                                if i == n {
                                    break;
                                }
                                match chunk[i] {
                                    b'"' => in_str = true,
                                    b'{' | b'[' => depth += 1,
                                    _ => {
                                        depth -= 1;
                                        if depth == 0 {
                                            i += 1;
                                            done = true;
                                            break;
                                        }
                                    }
                                }
                                i += 1;
                            }
                        }
                    }
                }
                cur.extend_from_slice(&chunk[begin..i]);
                if done {
                    let el = RawElement { index, line: start_line, column: start_col, bytes: std::mem::take(&mut cur) };
                    index += 1;
                    phase = Phase::After;
                    if !push(el) {
                        return Ok(());
                    }
                }
                continue;
            }
            let b = chunk[i];
            if b.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            match phase {
                Phase::Start => {
                    if b != b'[' {
                        return Err(Error::format(
                            path,
                            at(lines.at(chunk, i)),
                            format!("expected '[' (a JSON array of per-image records), found {}", shown(b)),
                        ));
                    }
                    phase = Phase::Before { first: true };
                }
                Phase::Before { first } => {
                    if b == b']' && first {
                        phase = Phase::End;
                    } else if b == b']' || b == b',' {
                        return Err(Error::format(
                            path,
                            at(lines.at(chunk, i)),
                            format!("expected record {index} after ',', found {}", shown(b)),
                        ));
                    } else {
                        (start_line, start_col) = lines.at(chunk, i);
                        cur.clear();
                        (depth, in_str) = (0, false);
                        kind = match b {
                            b'{' | b'[' => Kind::Nested,
                            b'"' => Kind::Str,
                            _ => Kind::Bare,
                        };
                        phase = Phase::In;
                        if kind == Kind::Str {
                            // Consume the opening quote here.
                            in_str = true;
                            cur.push(b);
                            i += 1;
                        }
                        continue;
                    }
                }
                Phase::After => match b {
                    b',' => phase = Phase::Before { first: false },
                    b']' => phase = Phase::End,
                    _ => {
                        return Err(Error::format(
                            path,
                            at(lines.at(chunk, i)),
                            format!("expected ',' or ']' after record {}, found {}", index - 1, shown(b)),
                        ))
                    }
                },
                Phase::End => {
                    return Err(Error::format(
                        path,
                        at(lines.at(chunk, i)),
                        format!("unexpected {} after the closing ']' of the array", shown(b)),
                    ))
                }
                Phase::In => unreachable!("handled above"),
            }
            i += 1;
        }
    }
    let end = at(lines.at(&[], 0));
    match phase {
        Phase::End => Ok(()),
        Phase::Start => Err(Error::format(path, end, "empty file; expected a JSON array of per-image records")),
        Phase::In if kind == Kind::Bare => {
            Err(Error::format(path, end, "unexpected end of file: the array is not closed (truncated file?)"))
        }
        Phase::In => Err(Error::format(
            path,
            end,
            format!(
                "unexpected end of file inside record {index} (which starts at line {start_line}, column {start_col}): \
                 the file is truncated"
            ),
        )),
        Phase::Before { .. } | Phase::After => Err(Error::format(
            path,
            end,
            format!("unexpected end of file after {index} records: the array is not closed (truncated file?)"),
        )),
    }
}

/// Reads the whole of `path` through a [`Counting`] reader.
pub(crate) fn open_counting(path: &Path) -> Result<(Counting<std::fs::File>, Arc<AtomicU64>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let count = Arc::new(AtomicU64::new(0));
    Ok((Counting { inner: file, count: Arc::clone(&count) }, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> std::result::Result<Vec<(u64, u64, String)>, String> {
        let mut out = Vec::new();
        split_json_array(s.as_bytes(), Path::new("t.json"), &mut |e| {
            out.push((e.line, e.column, String::from_utf8(e.bytes).unwrap()));
            true
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn splits_elements_with_positions() {
        let got = split("[\n {\"a\": \"x]}\\\"\", \"b\": [1, {}]},\n {\"c\": 2} , 3,\"s,]\" ,\ntrue\n]\n").unwrap();
        let texts: Vec<&str> = got.iter().map(|g| g.2.as_str()).collect();
        assert_eq!(texts, vec!["{\"a\": \"x]}\\\"\", \"b\": [1, {}]}", "{\"c\": 2}", "3", "\"s,]\"", "true"]);
        assert_eq!((got[0].0, got[0].1), (2, 2));
        assert_eq!((got[1].0, got[1].1), (3, 2));
        assert_eq!((got[2].0, got[2].1), (3, 13));
        assert_eq!((got[4].0, got[4].1), (4, 1));
        assert_eq!(split("[]").unwrap().len(), 0);
        assert_eq!(split(" [ ] \n").unwrap().len(), 0);
    }

    /// A reader that hands out `step` bytes at a time, so that every
    /// element, string and escape crosses chunk boundaries.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn split_with(s: &str, step: usize) -> std::result::Result<Vec<(u64, u64, String)>, String> {
        let mut out = Vec::new();
        split_json_array(Trickle(s.as_bytes(), step), Path::new("t.json"), &mut |e| {
            out.push((e.line, e.column, String::from_utf8(e.bytes).unwrap()));
            true
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let text = "[\n {\"a\": \"x]}\\\"\\\\\", \"b\": [1, {}]},\n {\"c\": \"\\\\\"} , 3,\"s,\\\"]\" ,\ntrue\n]\n";
        let whole = split(text).unwrap();
        assert_eq!(whole.len(), 5);
        for step in 1..=9 {
            assert_eq!(split_with(text, step).unwrap(), whole, "step {step}");
        }
        let bad = "[{\"a\": 1},\n\n  {\"b\": [2, 3";
        let want = split(bad).unwrap_err();
        assert!(want.contains("line 3, column 14") && want.contains("starts at line 3, column 3"), "{want}");
        for step in 1..=5 {
            assert_eq!(split_with(bad, step).unwrap_err(), want, "step {step}");
        }
        let bad = "[{\"a\": 1}\n,\n {\"b\": 2} {";
        let want = split(bad).unwrap_err();
        assert!(want.contains("line 3, column 11") && want.contains("after record 1"), "{want}");
        for step in 1..=5 {
            assert_eq!(split_with(bad, step).unwrap_err(), want, "step {step}");
        }
    }

    #[test]
    fn structural_errors_name_line_and_column() {
        let e = split("{\"a\": 1}").unwrap_err();
        assert!(e.contains("line 1, column 1") && e.contains("expected '['"), "{e}");
        let e = split("[{\"a\": 1}\n {\"b\": 2}]").unwrap_err();
        assert!(e.contains("line 2, column 2") && e.contains("after record 0"), "{e}");
        let e = split("[{\"a\": 1},]").unwrap_err();
        assert!(e.contains("line 1, column 11") && e.contains("expected record 1"), "{e}");
        let e = split("[{\"a\": 1}, {\"b\": [2, 3").unwrap_err();
        assert!(e.contains("inside record 1") && e.contains("line 1, column 12") && e.contains("truncated"), "{e}");
        let e = split("[{\"a\": 1}, ").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
        let e = split("[{\"a\": 1}] x").unwrap_err();
        assert!(e.contains("column 12") && e.contains("after the closing"), "{e}");
        assert!(split("").unwrap_err().contains("empty file"));
    }

    #[test]
    fn ordered_map_keeps_order_and_stops_on_error() {
        let mut seen = Vec::new();
        ordered_map(
            3,
            None,
            |push: &mut dyn FnMut(u32) -> bool| {
                for i in 0..1000 {
                    if !push(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| i * 2,
            |o| {
                seen.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        // A consumer error at item 100 stops the producer (which would otherwise run forever).
        let mut n = 0;
        let r = ordered_map(
            2,
            None,
            |push: &mut dyn FnMut(u64) -> bool| {
                let mut i = 0;
                while push(i) {
                    i += 1;
                }
                Ok(())
            },
            |i| i,
            |o| {
                n += 1;
                if o == 100 {
                    Err(Error::Invalid("stop".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(r, Err(Error::Invalid(m)) if m == "stop"));
        assert_eq!(n, 101);
        // A producer error comes after the items pushed before it.
        let mut got = Vec::new();
        let r = ordered_map(
            2,
            None,
            |push: &mut dyn FnMut(u32) -> bool| {
                for i in 0..70 {
                    push(i);
                }
                Err(Error::Invalid("truncated".into()))
            },
            |i| i,
            |o| {
                got.push(o);
                Ok(())
            },
        );
        assert!(matches!(r, Err(Error::Invalid(m)) if m == "truncated"));
        assert_eq!(got.len(), 70);
    }
}

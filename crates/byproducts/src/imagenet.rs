//! ImageNet-AB records: one ILSVRC-style XML document per training image,
//! with one `metadata` section per time the image was shown to an annotator:
//!
//! ```xml
//! <annotation>
//!   <filename>n01440764_10026</filename>
//!   <size><width>250</width><height>250</height></size>
//!   <metadata>
//!     <selected>True</selected>
//!     <selectedRecord><x>0.42</x><y>0.61</y></selectedRecord>
//!     <estimateTime>1840</estimateTime>
//!     <mouseTracking><time>120</time><x>0.1</x><y>0.2</y></mouseTracking>
//!     ...
//!   </metadata>
//! </annotation>
//! ```
//!
//! Coordinates are image-normalised (`[0, 1]`); times are milliseconds.
//! Optional `workerId`, `hitId` and `page` elements of a `metadata` section
//! are kept when present. Releases are `.tar.gz` archives of such files,
//! read member by member ([`read_archive`]) without unpacking.

use std::io::Read;
use std::path::Path;

use crate::stream::{open_counting, ordered_map, ReadOptions};
use crate::{Error, Point, ReadSummary, Result};

/// One mouse-trace sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// Milliseconds (the record's own clock).
    pub time_ms: f64,
    /// Position.
    pub point: Point,
}

/// One showing of the image to an annotator (a `metadata` section).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Showing {
    /// Whether the annotator selected the image as showing its class.
    pub selected: bool,
    /// The selecting click (`selectedRecord`), if recorded.
    pub click: Option<Point>,
    /// `estimateTime`: milliseconds between entering the image and the click.
    pub estimate_time_ms: Option<f64>,
    /// Mouse trace samples in file order.
    pub trace: Vec<TracePoint>,
    /// Worker id, when recorded.
    pub worker: Option<String>,
    /// HIT id, when recorded.
    pub hit: Option<String>,
    /// Page of the HIT, when recorded.
    pub page: Option<String>,
}

/// The byproducts of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// Image key: `filename` without extension (else the member's file stem).
    pub image: String,
    /// The WordNet id of the image's class (the `nXXXXXXXX_` prefix of the key), if it has one.
    pub wnid: Option<String>,
    /// Image size in pixels, when recorded.
    pub size: Option<(u32, u32)>,
    /// All showings, in file order.
    pub showings: Vec<Showing>,
}

/// Elements of a record that the parser reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Root,
    Filename,
    Size,
    Width,
    Height,
    Metadata,
    Selected,
    Estimate,
    Worker,
    Hit,
    Page,
    Record,
    RecX,
    RecY,
    Track,
    TrackTime,
    TrackX,
    TrackY,
    /// Anything else (and everything inside it).
    Other,
}

impl Tag {
    fn child(self, name: &[u8]) -> Tag {
        use Tag::*;
        match (self, name) {
            (Root, b"filename") => Filename,
            (Root, b"size") => Size,
            (Root, b"metadata") => Metadata,
            (Size, b"width") => Width,
            (Size, b"height") => Height,
            (Metadata, b"selected") => Selected,
            (Metadata, b"estimateTime") => Estimate,
            (Metadata, b"workerId") => Worker,
            (Metadata, b"hitId") => Hit,
            (Metadata, b"page") => Page,
            (Metadata, b"selectedRecord") => Record,
            (Metadata, b"mouseTracking") => Track,
            (Record, b"x") => RecX,
            (Record, b"y") => RecY,
            (Track, b"time") => TrackTime,
            (Track, b"x") => TrackX,
            (Track, b"y") => TrackY,
            _ => Other,
        }
    }

    fn is_leaf(self) -> bool {
        use Tag::*;
        matches!(
            self,
            Filename
                | Width
                | Height
                | Selected
                | Estimate
                | Worker
                | Hit
                | Page
                | RecX
                | RecY
                | TrackTime
                | TrackX
                | TrackY
        )
    }

    fn name(self) -> &'static str {
        use Tag::*;
        match self {
            Width => "width",
            Height => "height",
            Estimate => "estimateTime",
            RecX | TrackX => "x",
            RecY | TrackY => "y",
            TrackTime => "time",
            _ => "element",
        }
    }
}

/// The text of a leaf element and the byte offset of its start tag.
type Leaf<'a> = Option<(u64, std::borrow::Cow<'a, str>)>;

#[derive(Default)]
struct RawShowing<'a> {
    at: u64,
    selected: Leaf<'a>,
    estimate: Leaf<'a>,
    worker: Leaf<'a>,
    hit: Leaf<'a>,
    page: Leaf<'a>,
    /// Whether a `selectedRecord` was seen (only the first one counts).
    record: bool,
    in_first_record: bool,
    x: Leaf<'a>,
    y: Leaf<'a>,
    trace: Vec<[Leaf<'a>; 3]>,
}

/// Parses one record. `origin` names the file or archive member for errors;
/// positions in messages are byte offsets into the document.
///
/// A streaming XML reader (no document tree): only the elements above are
/// looked at, the first occurrence of each counts, and anything else is
/// skipped; the document must still be well-formed.
///
/// Records in the plain layout of the releases (elements without
/// attributes, no entities, comments or CDATA, at most an XML declaration
/// before the root) go through a dedicated scanner; anything else, and
/// every document the scanner finds a problem in, is read by the general
/// XML reader, so results and error messages are the same either way.
pub fn parse_record(xml: &str, origin: &str) -> std::result::Result<ImageRecord, String> {
    match parse_plain(xml, origin) {
        Some(r) => Ok(r),
        None => parse_general(xml, origin),
    }
}

/// Whether `b` is XML white space (what the reader trims around text).
fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing XML white space: the start and end offsets.
fn trim_xml(s: &[u8], from: usize, to: usize) -> (usize, usize) {
    let (mut a, mut z) = (from, to);
    while a < z && is_xml_space(s[a]) {
        a += 1;
    }
    while z > a && is_xml_space(s[z - 1]) {
        z -= 1;
    }
    (a, z)
}

/// A plain element name: ASCII letters, digits and `_ - . :`, not starting
/// with a digit, `-` or `.`.
fn is_plain_name(name: &[u8]) -> bool {
    match name.first() {
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
            name.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'))
        }
        _ => false,
    }
}

/// The dedicated scanner for the plain layout (see [`parse_record`]):
/// `None` when the document uses anything outside that layout or has any
/// problem, so that [`parse_general`] reads it and reports the error.
fn parse_plain(xml: &str, origin: &str) -> Option<ImageRecord> {
    let b = xml.as_bytes();
    let mut rec = RecordBuilder::new(xml, origin);
    let mut open: Vec<&[u8]> = Vec::with_capacity(8);
    let mut root_done = false;
    let mut i = 0;
    loop {
        let lt = memchr::memchr(b'<', &b[i..]).map(|k| i + k);
        let (a, z) = trim_xml(b, i, lt.unwrap_or(b.len()));
        if a < z {
            if open.is_empty() || memchr::memchr(b'&', &b[a..z]).is_some() {
                return None;
            }
            if rec.in_leaf() {
                rec.text(std::borrow::Cow::Borrowed(&xml[a..z]));
            }
        }
        let Some(lt) = lt else { break };
        let gt = lt + 1 + memchr::memchr(b'>', &b[lt + 1..])?;
        let inner = &b[lt + 1..gt];
        match inner.first()? {
            b'?' => {
                // Only a declaration or processing instruction before the root.
                if root_done || !open.is_empty() || inner.len() < 2 || !inner.ends_with(b"?") {
                    return None;
                }
            }
            b'!' => return None,
            b'/' => {
                if open.pop()? != &inner[1..] {
                    return None;
                }
                rec.end(lt as u64).ok()?;
                root_done = open.is_empty();
            }
            _ => {
                let (name, empty) = match inner.strip_suffix(b"/") {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                // Text of a leaf around a child element is left to the general reader.
                if root_done || rec.in_leaf() || !is_plain_name(name) {
                    return None;
                }
                rec.start(name, lt as u64, empty).ok()?;
                if empty {
                    root_done = open.is_empty();
                } else {
                    open.push(name);
                }
            }
        }
        i = gt + 1;
    }
    if !root_done {
        return None;
    }
    rec.finish().ok()
}

/// The general reader (quick-xml) behind [`parse_record`].
fn parse_general(xml: &str, origin: &str) -> std::result::Result<ImageRecord, String> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display, pos: u64| format!("{origin}: not well-formed XML at byte {pos}: {e}");
    let mut reader = quick_xml::Reader::from_str(xml);
    // No events for the indentation between elements.
    reader.config_mut().trim_text(true);
    let mut rec = RecordBuilder::new(xml, origin);
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| bad(&e, reader.error_position()))?;
        match ev {
            // `pos` may point at the white space before the tag (resolved by
            // `tag_at` only when an error message needs it).
            Event::Start(e) => rec.start(e.name().as_ref(), pos, false)?,
            Event::Empty(e) => rec.start(e.name().as_ref(), pos, true)?,
            Event::End(_) => rec.end(pos)?,
            Event::Text(t) if rec.in_leaf() => rec.text(text_of(t.into_inner()).map_err(|e| bad(&e, pos))?),
            Event::CData(t) if rec.in_leaf() => {
                rec.text(std::borrow::Cow::Owned(String::from_utf8_lossy(&t).into_owned()))
            }
            Event::Eof => break,
            _ => {}
        }
    }
    rec.finish()
}

/// The state of a record being read, fed with the document's elements and
/// texts in order by either reader.
struct RecordBuilder<'a> {
    xml: &'a str,
    origin: &'a str,
    stack: Vec<Tag>,
    seen_root: bool,
    filename: Leaf<'a>,
    width: Leaf<'a>,
    height: Leaf<'a>,
    size_seen: bool,
    in_first_size: bool,
    raw: Vec<RawShowing<'a>>,
    /// The leaf being read: its tag, start offset and text so far.
    leaf: Option<(Tag, u64, Option<std::borrow::Cow<'a, str>>)>,
}

impl<'a> RecordBuilder<'a> {
    fn new(xml: &'a str, origin: &'a str) -> Self {
        RecordBuilder {
            xml,
            origin,
            stack: Vec::with_capacity(8),
            seen_root: false,
            filename: None,
            width: None,
            height: None,
            size_seen: false,
            in_first_size: false,
            raw: Vec::new(),
            leaf: None,
        }
    }

    fn bad(&self, what: &str, pos: u64) -> String {
        format!("{}: not well-formed XML at byte {pos}: {what}", self.origin)
    }

    /// Whether text now belongs to a leaf element.
    fn in_leaf(&self) -> bool {
        self.leaf.is_some()
    }

    /// A start tag (or an empty element) at byte `pos`.
    fn start(&mut self, name: &[u8], pos: u64, empty: bool) -> std::result::Result<(), String> {
        let tag = match self.stack.last() {
            None if self.seen_root => return Err(self.bad("a second root element", pos)),
            None => {
                self.seen_root = true;
                Tag::Root
            }
            Some(&parent) => parent.child(name),
        };
        match tag {
            Tag::Size if !self.size_seen => {
                self.size_seen = true;
                self.in_first_size = true;
            }
            Tag::Size => self.in_first_size = false,
            Tag::Metadata => self.raw.push(RawShowing { at: pos, ..Default::default() }),
            Tag::Record => {
                if let Some(m) = self.raw.last_mut() {
                    m.in_first_record = !m.record;
                    m.record = true;
                }
            }
            Tag::Track => {
                if let Some(m) = self.raw.last_mut() {
                    m.trace.push([None, None, None]);
                }
            }
            t if t.is_leaf() => self.leaf = Some((t, pos, None)),
            _ => {}
        }
        if empty {
            self.close(tag);
        } else {
            self.stack.push(tag);
        }
        Ok(())
    }

    /// An end tag at byte `pos`.
    fn end(&mut self, pos: u64) -> std::result::Result<(), String> {
        let Some(tag) = self.stack.pop() else { return Err(self.bad("an end tag without a start tag", pos)) };
        self.close(tag);
        Ok(())
    }

    /// A piece of the current leaf's text.
    fn text(&mut self, piece: std::borrow::Cow<'a, str>) {
        if let Some((_, _, text)) = self.leaf.as_mut() {
            match text {
                None => *text = Some(piece),
                Some(prev) => prev.to_mut().push_str(&piece),
            }
        }
    }

    /// Files the text of a leaf that just closed into its slot (first occurrence wins).
    fn close(&mut self, tag: Tag) {
        if tag == Tag::Record {
            if let Some(m) = self.raw.last_mut() {
                m.in_first_record = false;
            }
            return;
        }
        if !tag.is_leaf() {
            return;
        }
        let Some((t, at, text)) = self.leaf.take() else { return };
        let value = Some((at, text.unwrap_or_default()));
        let put = |slot: &mut Leaf<'a>| {
            if slot.is_none() {
                *slot = value;
            }
        };
        match t {
            Tag::Filename => put(&mut self.filename),
            Tag::Width if self.in_first_size => put(&mut self.width),
            Tag::Height if self.in_first_size => put(&mut self.height),
            _ => {
                let Some(m) = self.raw.last_mut() else { return };
                match t {
                    Tag::Selected => put(&mut m.selected),
                    Tag::Estimate => put(&mut m.estimate),
                    Tag::Worker => put(&mut m.worker),
                    Tag::Hit => put(&mut m.hit),
                    Tag::Page => put(&mut m.page),
                    Tag::RecX if m.in_first_record => put(&mut m.x),
                    Tag::RecY if m.in_first_record => put(&mut m.y),
                    Tag::TrackTime | Tag::TrackX | Tag::TrackY => {
                        if let Some(tr) = m.trace.last_mut() {
                            let k = match t {
                                Tag::TrackTime => 0,
                                Tag::TrackX => 1,
                                _ => 2,
                            };
                            put(&mut tr[k]);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The record, once the whole document was fed.
    fn finish(self) -> std::result::Result<ImageRecord, String> {
        let (xml, origin) = (self.xml, self.origin);
        if !self.stack.is_empty() {
            return Err(format!(
                "{origin}: not well-formed XML: the document ends inside {} open element(s)",
                self.stack.len()
            ));
        }
        if !self.seen_root {
            return Err(format!("{origin}: not well-formed XML: no root element"));
        }
        let num = |l: &Leaf, tag: Tag| -> std::result::Result<Option<f64>, String> {
            match l {
                None => Ok(None),
                Some((at, t)) => {
                    let t = t.trim();
                    parse_f64(t).filter(|v| v.is_finite()).map(Some).ok_or_else(|| {
                        format!(
                            "{origin}: byte {}: <{}> is {t:?}; expected a finite number",
                            tag_at(xml, *at),
                            tag.name()
                        )
                    })
                }
            }
        };
        let stem = origin.rsplit('/').next().unwrap_or(origin);
        let stem = stem.strip_suffix(".xml").unwrap_or(stem);
        let image = self.filename.as_ref().map(|(_, t)| t.trim()).filter(|s| !s.is_empty()).unwrap_or(stem);
        let image = image.rsplit_once('.').map(|(a, _)| a).unwrap_or(image).to_string();
        let wnid = image
            .split_once('_')
            .map(|(w, _)| w)
            .filter(|w| w.len() == 9 && w.starts_with('n') && w[1..].bytes().all(|b| b.is_ascii_digit()))
            .map(str::to_string);
        let size = match (num(&self.width, Tag::Width)?, num(&self.height, Tag::Height)?) {
            (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 => Some((w as u32, h as u32)),
            _ => None,
        };
        let mut showings = Vec::with_capacity(self.raw.len());
        for m in self.raw {
            let selected = match m.selected.as_ref().map(|(_, t)| t.trim()) {
                Some(t) if t.eq_ignore_ascii_case("true") => true,
                Some(t) if t.eq_ignore_ascii_case("false") => false,
                Some(t) => {
                    return Err(format!(
                        "{origin}: byte {}: <selected> is {t:?}; expected True or False",
                        tag_at(xml, m.at)
                    ))
                }
                None => return Err(format!("{origin}: byte {}: <metadata> without <selected>", tag_at(xml, m.at))),
            };
            let click = match (num(&m.x, Tag::RecX)?, num(&m.y, Tag::RecY)?) {
                (Some(x), Some(y)) => Some(Point { x, y }),
                _ => None,
            };
            let mut trace = Vec::with_capacity(m.trace.len());
            for [t, x, y] in &m.trace {
                if let (Some(time_ms), Some(x), Some(y)) =
                    (num(t, Tag::TrackTime)?, num(x, Tag::TrackX)?, num(y, Tag::TrackY)?)
                {
                    trace.push(TracePoint { time_ms, point: Point { x, y } });
                }
            }
            let owned = |l: Leaf| l.map(|(_, t)| t.trim().to_string()).filter(|s| !s.is_empty());
            showings.push(Showing {
                selected,
                click,
                estimate_time_ms: num(&m.estimate, Tag::Estimate)?,
                trace,
                worker: owned(m.worker),
                hit: owned(m.hit),
                page: owned(m.page),
            });
        }
        Ok(ImageRecord { image, wnid, size, showings })
    }
}

/// Powers of ten that are exact in an `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
    1e20, 1e21, 1e22,
];

/// Parses a number exactly as `str::parse::<f64>` does, with a fast path for
/// the plain decimals the releases hold (`-12.3456`): when the digits form an
/// integer below 2^53 and there are at most 22 after the point, both it and
/// the power of ten are exact doubles, so one division gives the correctly
/// rounded value (Clinger's fast path). Anything else goes to the standard
/// parser.
fn parse_f64(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut frac = None;
    for (i, &c) in digits.iter().enumerate() {
        match c {
            b'0'..=b'9' if count < 19 => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
            }
            b'.' if frac.is_none() && i > 0 => frac = Some(i + 1),
            _ => return s.parse().ok(),
        }
    }
    let frac_digits = match frac {
        Some(start) if start == digits.len() => return s.parse().ok(),
        Some(start) => digits.len() - start,
        None if digits.is_empty() => return s.parse().ok(),
        None => 0,
    };
    if mantissa > 1 << 53 || frac_digits >= POW10.len() {
        return s.parse().ok();
    }
    let v = mantissa as f64 / POW10[frac_digits];
    Some(if neg { -v } else { v })
}

/// The offset of the first `<` at or after `pos`.
fn tag_at(xml: &str, pos: u64) -> u64 {
    let p = (pos as usize).min(xml.len());
    pos + xml[p..].find('<').unwrap_or(0) as u64
}

/// The text of a text event: borrowed from the input unless it has entities.
fn text_of(raw: std::borrow::Cow<'_, [u8]>) -> std::result::Result<std::borrow::Cow<'_, str>, String> {
    use std::borrow::Cow;
    // The input is a &str, so the bytes are UTF-8; only entities need work.
    let t: Cow<'_, str> = match raw {
        Cow::Borrowed(b) => Cow::Borrowed(std::str::from_utf8(b).map_err(|e| e.to_string())?),
        Cow::Owned(b) => Cow::Owned(String::from_utf8(b).map_err(|e| e.to_string())?),
    };
    if t.contains('&') {
        Ok(Cow::Owned(quick_xml::escape::unescape(&t).map_err(|e| e.to_string())?.into_owned()))
    } else {
        Ok(t)
    }
}

/// Streams the records of a `.tar.gz` (or plain `.tar`) release, calling
/// `each` for every `.xml` member in archive order. One thread decompresses
/// and cuts the archive into members, [`ReadOptions::threads`] others parse
/// them. A malformed member is an error naming the member and its byte
/// offset in the (uncompressed) archive, unless `skip_bad`, when it is
/// counted in the summary and skipped. A truncated or corrupt archive is
/// always an error.
pub fn read_archive(path: &Path, opts: &ReadOptions, each: impl FnMut(ImageRecord)) -> Result<ReadSummary> {
    read_archive_map(path, opts, |r| r, each)
}

/// [`read_archive`] with a per-record `map` that runs on the parser threads
/// (for work that needs no shared mutable state, such as looking up the
/// record's ground truth); `each` gets the mapped values in archive order.
pub fn read_archive_map<T: Send>(
    path: &Path,
    opts: &ReadOptions,
    map: impl Fn(ImageRecord) -> T + Sync,
    mut each: impl FnMut(T),
) -> Result<ReadSummary> {
    let (file, count) = open_counting(path)?;
    let buffered = std::io::BufReader::with_capacity(1 << 20, file);
    let reader: Box<dyn Read + Send> = if path.extension().is_some_and(|e| e == "gz" || e == "tgz") {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut summary = ReadSummary::default();
    let skip_bad = opts.skip_bad;
    type Member = (String, u64, Vec<u8>);
    ordered_map(
        opts.worker_threads(),
        opts.progress.map(|f| (&*count, f)),
        move |push: &mut dyn FnMut(Member) -> bool| {
            let mut archive = tar::Archive::new(reader);
            let mut last = String::from("the start of the archive");
            let entries = archive.entries().map_err(|e| Error::format(path, "archive header", e.to_string()))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| {
                    Error::format(path, format!("after member {last}"), format!("corrupt or truncated archive: {e}"))
                })?;
                let name = entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                let offset = entry.raw_file_position();
                if !entry.header().entry_type().is_file()
                    || !name.ends_with(".xml")
                    || name.rsplit('/').next().is_some_and(|b| b.starts_with("._"))
                {
                    continue;
                }
                let mut bytes = Vec::with_capacity(entry.size() as usize);
                entry.read_to_end(&mut bytes).map_err(|e| {
                    Error::format(
                        path,
                        format!("member {name} at byte {offset}"),
                        format!("cannot read member (corrupt or truncated archive): {e}"),
                    )
                })?;
                last = format!("{name} (byte {offset})");
                if !push((name, offset, bytes)) {
                    break;
                }
            }
            Ok(())
        },
        |(name, offset, bytes): Member| {
            let parsed = match std::str::from_utf8(&bytes) {
                Ok(xml) => parse_record(xml, &name).map(&map),
                Err(e) => Err(format!("{name}: not UTF-8 text ({e})")),
            };
            (name, offset, parsed)
        },
        |(name, offset, parsed)| match parsed {
            Ok(r) => {
                summary.records += 1;
                each(r);
                Ok(())
            }
            Err(msg) if skip_bad => {
                summary.skip(msg);
                Ok(())
            }
            Err(msg) => Err(Error::format(path, format!("member {name} at byte {offset}"), msg)),
        },
    )?;
    Ok(summary)
}

/// Writes a release archive (`.tar.gz`, gzip level 6) of the given
/// `(member name, XML)` pairs atomically: the layout [`read_archive`] reads,
/// for the studio's exports and synthetic releases. Returns the number of
/// members written.
pub fn write_archive<N, B>(path: &Path, members: impl IntoIterator<Item = (N, B)>) -> Result<u64>
where
    N: AsRef<str>,
    B: AsRef<[u8]>,
{
    let mut n = 0u64;
    labelscope_core::atomic::write_atomic_with(path, |w| {
        let gz = flate2::write::GzEncoder::new(w, flate2::Compression::new(6));
        let mut tar = tar::Builder::new(gz);
        for (name, body) in members {
            let body = body.as_ref();
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(1_600_000_000);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name.as_ref(), body)?;
            n += 1;
        }
        tar.into_inner()?.finish()?.flush()
    })
    .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record in the releases' layout with every element the parser reads.
    const REC: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<annotation>\n  <folder>n01440764</folder>\n  \
        <filename>n01440764_7.JPEG</filename>\n  <size><width>250</width><height>200</height><depth>3</depth></size>\n  \
        <metadata>\n    <workerId> W1 </workerId><hitId>H1</hitId><page>2</page>\n    <selected>True</selected>\n    \
        <selectedRecord><x>0.25</x><y>0.75</y></selectedRecord>\n    <estimateTime>1840</estimateTime>\n    \
        <mouseTracking><time>12</time><x>0.1</x><y>0.2</y></mouseTracking>\n    \
        <mouseTracking><time>30</time><x>0.3</x><y>0.4</y></mouseTracking>\n  </metadata>\n  \
        <metadata><selected>false</selected><empty/><selectedRecord/></metadata>\n</annotation>\n";

    /// The dedicated scanner must agree with the general reader whenever it
    /// answers, and answer for the releases' layout.
    fn agree(xml: &str) -> bool {
        let general = parse_general(xml, "t/n01440764_9.xml");
        match parse_plain(xml, "t/n01440764_9.xml") {
            Some(r) => {
                assert_eq!(general.as_ref(), Ok(&r), "scanner accepted {xml:?}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn fast_number_parser_matches_the_standard_one() {
        let fixed = [
            "0", "-0", "0.0", "-0.0", "1", "12.5", "-12.3456", "0.1", "0.30000000000000004", "9007199254740993",
            "9007199254740992", "123456789012345678901", "1e5", "1E-3", "+1", ".5", "5.", "-", "", ".", "1.2.3",
            "0x10", "inf", "NaN", "--1", "1-", "00012.500", "0.0000000000000000000001", "0.00000000000000000000001",
            "1234567890.123456789",
        ];
        for s in fixed {
            let ours = parse_f64(s).map(f64::to_bits);
            let std = s.parse::<f64>().ok().map(f64::to_bits);
            assert_eq!(ours, std, "{s:?}");
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let r = next();
            let int = next() % 10u64.pow((r % 12) as u32 + 1);
            let frac_len = ((r >> 8) % 20) as usize;
            let frac: String = (0..frac_len).map(|_| char::from(b'0' + (next() % 10) as u8)).collect();
            let sign = if r >> 40 & 1 == 1 { "-" } else { "" };
            let s = if frac_len == 0 { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") };
            assert_eq!(parse_f64(&s).map(f64::to_bits), s.parse::<f64>().ok().map(f64::to_bits), "{s:?}");
        }
    }

    #[test]
    fn scanner_reads_the_release_layout_like_the_general_reader() {
        assert!(agree(REC));
        let r = parse_plain(REC, "x.xml").unwrap();
        // Checked by hand against the document above.
        assert_eq!(r.image, "n01440764_7");
        assert_eq!(r.size, Some((250, 200)));
        assert_eq!(r.showings.len(), 2);
        assert_eq!(r.showings[0].worker.as_deref(), Some("W1"));
        assert_eq!(r.showings[0].click, Some(Point { x: 0.25, y: 0.75 }));
        assert_eq!(r.showings[0].trace.len(), 2);
        assert_eq!(r.showings[0].trace[1].time_ms, 30.0);
        assert!(!r.showings[1].selected && r.showings[1].click.is_none());
        let cfg = crate::synth::SynthConfig { classes: 2, ..Default::default() };
        let wnids = ["n01440764", "n01443537"];
        for i in 0..300 {
            let (_, xml, ..) = crate::synth::imagenet_image(&cfg, &wnids, i);
            assert!(agree(&xml), "synthetic record {i} fell back to the general reader");
        }
    }

    #[test]
    fn scanner_leaves_everything_unusual_to_the_general_reader() {
        let unusual = [
            "<annotation><filename>a&amp;b</filename></annotation>",
            "<annotation><!-- c --><filename>a</filename></annotation>",
            "<annotation><filename><![CDATA[a]]></filename></annotation>",
            "<annotation id=\"1\"><filename>a</filename></annotation>",
            "<annotation><filename>a<b/>c</filename></annotation>",
            "<annotation><filename>a</name></annotation>",
            "<annotation><filename>a</filename>",
            "<annotation></annotation><annotation></annotation>",
            "<annotation></annotation>junk",
            "junk<annotation></annotation>",
            "\u{feff}<annotation></annotation>",
            "<annotation><metadata></metadata></annotation>",
            "<annotation><metadata><selected>maybe</selected></metadata></annotation>",
            "<annotation><size><width>x</width></size></annotation>",
            "<annotation><1a>b</1a></annotation>",
            "<annotation></annotation ><x>",
            "<annotation><?pi x?></annotation>",
            "<!DOCTYPE a><annotation></annotation>",
            "<annotation>< a></a></annotation>",
            "",
            "   ",
            "<annotation",
        ];
        for xml in unusual {
            assert!(!agree(xml), "the scanner should have declined {xml:?}");
        }
        for xml in ["<annotation/>", "<?xml version=\"1.0\"?><annotation/>", " <annotation> </annotation> \n"] {
            assert!(agree(xml), "{xml:?}");
        }
    }

    /// Random damage to a record: wherever the scanner still answers, the
    /// general reader gives the same record (never an error).
    #[test]
    fn scanner_never_accepts_what_the_general_reader_rejects() {
        let pieces: [&[u8]; 12] = [b"<", b">", b"/", b"&", b"!", b"?", b" ", b"a", b"</x>", b"<x>", b"<x/>", b"\""];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let (mut answered, mut declined) = (0, 0);
        for _ in 0..6000 {
            let mut doc = REC.as_bytes().to_vec();
            for _ in 0..1 + next(2) {
                let at = next(doc.len() + 1);
                match next(3) {
                    0 => {
                        let p = pieces[next(pieces.len())];
                        doc.splice(at..at, p.iter().copied());
                    }
                    1 if at < doc.len() => {
                        let to = (at + 1 + next(12)).min(doc.len());
                        doc.drain(at..to);
                    }
                    _ => {
                        let to = (at + next(30)).min(doc.len());
                        let copy = doc[at..to].to_vec();
                        let dst = next(doc.len() + 1);
                        doc.splice(dst..dst, copy);
                    }
                }
            }
            let Ok(xml) = std::str::from_utf8(&doc) else { continue };
            if agree(xml) {
                answered += 1;
            } else {
                declined += 1;
            }
        }
        // Both sides must have been exercised for the check to mean anything.
        assert!(answered > 400 && declined > 400, "answered {answered}, declined {declined}");
    }
}

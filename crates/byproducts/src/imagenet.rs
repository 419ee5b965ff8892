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
pub fn parse_record(xml: &str, origin: &str) -> std::result::Result<ImageRecord, String> {
    use quick_xml::events::Event;
    let bad = |e: &dyn std::fmt::Display, pos: u64| format!("{origin}: not well-formed XML at byte {pos}: {e}");
    let mut reader = quick_xml::Reader::from_str(xml);
    // No events for the indentation between elements.
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Tag> = Vec::with_capacity(8);
    let mut seen_root = false;
    let (mut filename, mut width, mut height): (Leaf, Leaf, Leaf) = (None, None, None);
    let mut size_seen = false;
    let mut in_first_size = false;
    let mut raw: Vec<RawShowing> = Vec::new();
    // The leaf being read: its tag, start offset and text so far.
    let mut leaf: Option<(Tag, u64, Option<std::borrow::Cow<'_, str>>)> = None;
    loop {
        let pos = reader.buffer_position();
        let ev = reader.read_event().map_err(|e| bad(&e, reader.error_position()))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let tag = match stack.last() {
                    None if seen_root => return Err(bad(&"a second root element", pos)),
                    None => {
                        seen_root = true;
                        Tag::Root
                    }
                    Some(&parent) => parent.child(e.name().as_ref()),
                };
                // Where the reader was; may point at the whitespace before the tag
                // (resolved by `tag_at` only when an error message needs it).
                let start = pos;
                match tag {
                    Tag::Size if !size_seen => {
                        size_seen = true;
                        in_first_size = true;
                    }
                    Tag::Size => in_first_size = false,
                    Tag::Metadata => raw.push(RawShowing { at: start, ..Default::default() }),
                    Tag::Record => {
                        if let Some(m) = raw.last_mut() {
                            m.in_first_record = !m.record;
                            m.record = true;
                        }
                    }
                    Tag::Track => {
                        if let Some(m) = raw.last_mut() {
                            m.trace.push([None, None, None]);
                        }
                    }
                    t if t.is_leaf() => leaf = Some((t, start, None)),
                    _ => {}
                }
                if empty {
                    close(tag, &mut leaf, &mut raw, &mut filename, &mut width, &mut height, in_first_size);
                } else {
                    stack.push(tag);
                }
            }
            Event::End(_) => {
                let Some(tag) = stack.pop() else { return Err(bad(&"an end tag without a start tag", pos)) };
                close(tag, &mut leaf, &mut raw, &mut filename, &mut width, &mut height, in_first_size);
            }
            Event::Text(t) => {
                if let Some((_, _, text)) = leaf.as_mut() {
                    let piece = text_of(t.into_inner()).map_err(|e| bad(&e, pos))?;
                    match text {
                        None => *text = Some(piece),
                        Some(prev) => prev.to_mut().push_str(&piece),
                    }
                }
            }
            Event::CData(t) => {
                if let Some((_, _, text)) = leaf.as_mut() {
                    let piece = String::from_utf8_lossy(&t).into_owned();
                    match text {
                        None => *text = Some(std::borrow::Cow::Owned(piece)),
                        Some(prev) => prev.to_mut().push_str(&piece),
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(format!("{origin}: not well-formed XML: the document ends inside {} open element(s)", stack.len()));
    }
    if !seen_root {
        return Err(format!("{origin}: not well-formed XML: no root element"));
    }
    let num = |l: &Leaf, tag: Tag| -> std::result::Result<Option<f64>, String> {
        match l {
            None => Ok(None),
            Some((at, t)) => {
                let t = t.trim();
                t.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some).ok_or_else(|| {
                    format!("{origin}: byte {}: <{}> is {t:?}; expected a finite number", tag_at(xml, *at), tag.name())
                })
            }
        }
    };
    let stem = origin.rsplit('/').next().unwrap_or(origin);
    let stem = stem.strip_suffix(".xml").unwrap_or(stem);
    let image = filename.as_ref().map(|(_, t)| t.trim()).filter(|s| !s.is_empty()).unwrap_or(stem);
    let image = image.rsplit_once('.').map(|(a, _)| a).unwrap_or(image).to_string();
    let wnid = image
        .split_once('_')
        .map(|(w, _)| w)
        .filter(|w| w.len() == 9 && w.starts_with('n') && w[1..].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    let size = match (num(&width, Tag::Width)?, num(&height, Tag::Height)?) {
        (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 => Some((w as u32, h as u32)),
        _ => None,
    };
    let mut showings = Vec::with_capacity(raw.len());
    for m in raw {
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

/// Files the text of a leaf that just closed into its slot (first occurrence wins).
#[allow(clippy::too_many_arguments)]
fn close<'a>(
    tag: Tag,
    leaf: &mut Option<(Tag, u64, Option<std::borrow::Cow<'a, str>>)>,
    raw: &mut [RawShowing<'a>],
    filename: &mut Leaf<'a>,
    width: &mut Leaf<'a>,
    height: &mut Leaf<'a>,
    in_first_size: bool,
) {
    if tag == Tag::Record {
        if let Some(m) = raw.last_mut() {
            m.in_first_record = false;
        }
        return;
    }
    if !tag.is_leaf() {
        return;
    }
    let Some((t, at, text)) = leaf.take() else { return };
    let value = Some((at, text.unwrap_or_default()));
    let put = |slot: &mut Leaf<'a>| {
        if slot.is_none() {
            *slot = value;
        }
    };
    match t {
        Tag::Filename => put(filename),
        Tag::Width if in_first_size => put(width),
        Tag::Height if in_first_size => put(height),
        _ => {
            let Some(m) = raw.last_mut() else { return };
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

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

fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Option<roxmltree::Node<'a, 'a>> {
    n.children().find(|c| c.is_element() && c.tag_name().name() == name)
}

fn text<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    child(n, name).and_then(|c| c.text()).map(str::trim)
}

/// Parses one record. `origin` names the file or archive member for errors;
/// positions in messages are byte offsets into the document.
pub fn parse_record(xml: &str, origin: &str) -> std::result::Result<ImageRecord, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("{origin}: not well-formed XML: {e}"))?;
    let root = doc.root_element();
    let at = |n: roxmltree::Node| format!("{origin}: byte {}", n.range().start);
    let num = |n: roxmltree::Node, name: &str| -> std::result::Result<Option<f64>, String> {
        match text(n, name) {
            None => Ok(None),
            Some(t) => t.parse::<f64>().ok().filter(|v| v.is_finite()).map(Some).ok_or_else(|| {
                format!("{}: <{name}> is {t:?}; expected a finite number", at(child(n, name).unwrap_or(n)))
            }),
        }
    };
    let stem = origin.rsplit('/').next().unwrap_or(origin);
    let stem = stem.strip_suffix(".xml").unwrap_or(stem);
    let image = text(root, "filename").filter(|s| !s.is_empty()).unwrap_or(stem);
    let image = image.rsplit_once('.').map(|(a, _)| a).unwrap_or(image).to_string();
    let wnid = image
        .split_once('_')
        .map(|(w, _)| w)
        .filter(|w| w.len() == 9 && w.starts_with('n') && w[1..].bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string);
    let size = match child(root, "size") {
        Some(s) => match (num(s, "width")?, num(s, "height")?) {
            (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 => Some((w as u32, h as u32)),
            _ => None,
        },
        None => None,
    };
    let mut showings = Vec::new();
    for m in root.children().filter(|c| c.is_element() && c.tag_name().name() == "metadata") {
        let selected = match text(m, "selected") {
            Some(t) if t.eq_ignore_ascii_case("true") => true,
            Some(t) if t.eq_ignore_ascii_case("false") => false,
            Some(t) => return Err(format!("{}: <selected> is {t:?}; expected True or False", at(m))),
            None => return Err(format!("{}: <metadata> without <selected>", at(m))),
        };
        let click = match child(m, "selectedRecord") {
            Some(r) => match (num(r, "x")?, num(r, "y")?) {
                (Some(x), Some(y)) => Some(Point { x, y }),
                _ => None,
            },
            None => None,
        };
        let mut trace = Vec::new();
        for t in m.children().filter(|c| c.is_element() && c.tag_name().name() == "mouseTracking") {
            if let (Some(time_ms), Some(x), Some(y)) = (num(t, "time")?, num(t, "x")?, num(t, "y")?) {
                trace.push(TracePoint { time_ms, point: Point { x, y } });
            }
        }
        let owned = |name: &str| text(m, name).filter(|s| !s.is_empty()).map(str::to_string);
        showings.push(Showing {
            selected,
            click,
            estimate_time_ms: num(m, "estimateTime")?,
            trace,
            worker: owned("workerId"),
            hit: owned("hitId"),
            page: owned("page"),
        });
    }
    Ok(ImageRecord { image, wnid, size, showings })
}

/// Streams the records of a `.tar.gz` (or plain `.tar`) release, calling
/// `each` for every `.xml` member in archive order. One thread decompresses
/// and cuts the archive into members, [`ReadOptions::threads`] others parse
/// them. A malformed member is an error naming the member and its byte
/// offset in the (uncompressed) archive, unless `skip_bad`, when it is
/// counted in the summary and skipped. A truncated or corrupt archive is
/// always an error.
pub fn read_archive(path: &Path, opts: &ReadOptions, mut each: impl FnMut(ImageRecord)) -> Result<ReadSummary> {
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
                Ok(xml) => parse_record(xml, &name),
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

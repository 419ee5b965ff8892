//! The list of images of a run, and its split into shards.
//!
//! A manifest is a TSV file with a header line naming its columns:
//! `id` (optional; default: the join key of `features`), `features`
//! (required), `image` (optional image file, needed for the CRF, the gallery
//! and real image sizes), `width` and `height` (optional output size when no
//! image is given). Relative paths are resolved against the manifest's
//! folder. Blank lines and lines starting with `#` are skipped.
//!
//! Alternatively a run takes every feature file of a folder (`.npy`, `.npz`,
//! `.safetensors`; the id is the file name without that extension) and looks
//! up each image by id in an image folder.
//!
//! Entries are sorted by id, and ids must be unique. Shard `i` of `n` holds the
//! entries at sorted positions `p` with `p mod n = i`, so shards are balanced
//! and every entry is in exactly one shard.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use labelscope_core::ids::join_key;

use crate::error::{Error, Result};

/// One image of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The image id.
    pub id: String,
    /// The feature file.
    pub features: PathBuf,
    /// The image file, if known.
    pub image: Option<PathBuf>,
    /// The output size `(width, height)` when no image is given.
    pub size: Option<(usize, usize)>,
}

/// `i/n`: the `i`-th (0-based) of `n` shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index, `< count`.
    pub index: usize,
    /// Number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole run as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `i/n` with `0 ≤ i < n`.
    pub fn parse(s: &str) -> Result<Shard> {
        let bad = || Error::Invalid(format!("shard {s:?}: expected i/n with 0 <= i < n, such as 3/16"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The file-name stem of this shard's output, `shard-00003-of-00016`.
    pub fn stem(&self) -> String {
        format!("shard-{:05}-of-{:05}", self.index, self.count)
    }

    /// The entries of this shard (entries must be sorted by id).
    pub fn select<'a>(&self, entries: &'a [Entry]) -> Vec<&'a Entry> {
        entries.iter().enumerate().filter(|(p, _)| p % self.count == self.index).map(|(_, e)| e).collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

const FEATURE_EXTENSIONS: &[&str] = &["npy", "npz", "safetensors"];

fn feature_stem(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty() && FEATURE_EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))).then_some(stem)
}

fn sort_unique(mut entries: Vec<Entry>, source: &Path) -> Result<Vec<Entry>> {
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    for pair in entries.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(Error::format(
                source,
                format!("id {:?}", pair[0].id),
                format!(
                    "two entries have this id ({} and {}); ids must be unique",
                    pair[0].features.display(),
                    pair[1].features.display()
                ),
            ));
        }
    }
    if entries.is_empty() {
        return Err(Error::format(source, "entries", "no images to process"));
    }
    Ok(entries)
}

/// Reads a manifest TSV (see the module docs).
pub fn read_manifest(path: &Path) -> Result<Vec<Entry>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |s: &str| {
        let p = Path::new(s);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err(Error::format(
            path,
            "line 1",
            "empty manifest; expected a header line such as `id\tfeatures\timage`",
        ));
    };
    let cols: Vec<&str> = header.split('\t').map(str::trim).collect();
    let find = |name: &str| cols.iter().position(|c| c.eq_ignore_ascii_case(name));
    for c in &cols {
        if !["id", "features", "image", "width", "height"].iter().any(|k| c.eq_ignore_ascii_case(k)) {
            return Err(Error::format(
                path,
                "header",
                format!("unknown column {c:?}; expected columns id, features, image, width, height (tab-separated)"),
            ));
        }
    }
    let Some(fcol) = find("features") else {
        return Err(Error::format(path, "header", "no `features` column (columns are tab-separated)"));
    };
    let (icol, idcol, wcol, hcol) = (find("image"), find("id"), find("width"), find("height"));
    if wcol.is_some() != hcol.is_some() {
        return Err(Error::format(path, "header", "give both `width` and `height` columns, or neither"));
    }
    let mut entries = Vec::new();
    for (ln, line) in lines {
        let loc = format!("line {}", ln + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != cols.len() {
            return Err(Error::format(
                path,
                loc,
                format!("{} tab-separated fields; the header has {}", fields.len(), cols.len()),
            ));
        }
        let get = |c: Option<usize>| c.map(|i| fields[i].trim()).filter(|s| !s.is_empty());
        let feat = get(Some(fcol)).ok_or_else(|| Error::format(path, &loc, "empty `features` field"))?;
        let image = get(icol).map(resolve);
        let id = match get(idcol) {
            Some(id) => id.to_string(),
            None => match &image {
                Some(img) => join_key(&img.to_string_lossy()).to_string(),
                None => {
                    let name =
                        Path::new(feat).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    feature_stem(&name).unwrap_or(&name).to_string()
                }
            },
        };
        let size = match (get(wcol), get(hcol)) {
            (Some(w), Some(h)) => {
                let parse = |v: &str, what: &str| {
                    v.parse::<usize>()
                        .ok()
                        .filter(|&x| x > 0)
                        .ok_or_else(|| Error::format(path, &loc, format!("{what} {v:?} is not a positive integer")))
                };
                Some((parse(w, "width")?, parse(h, "height")?))
            }
            (None, None) => None,
            _ => return Err(Error::format(path, &loc, "give both width and height, or neither")),
        };
        entries.push(Entry { id, features: resolve(feat), image, size });
    }
    sort_unique(entries, path)
}

/// Every feature file of `dir` (ids from the file names), with images looked
/// up by id in `images` (any image extension, case-insensitive). With
/// `require_images`, an id without an image is an error.
pub fn from_dirs(dir: &Path, images: Option<&Path>, require_images: bool) -> Result<Vec<Entry>> {
    let list = |d: &Path| -> Result<Vec<(String, PathBuf)>> {
        let rd = std::fs::read_dir(d).map_err(|e| Error::io(d, e))?;
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io(d, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            out.push((name, ent.path()));
        }
        Ok(out)
    };
    let image_map: HashMap<String, PathBuf> = match images {
        Some(d) => list(d)?
            .into_iter()
            .filter(|(n, _)| join_key(n) != n.as_str())
            .map(|(n, p)| (join_key(&n).to_string(), p))
            .collect(),
        None => HashMap::new(),
    };
    let mut entries = Vec::new();
    for (name, path) in list(dir)? {
        let Some(stem) = feature_stem(&name) else { continue };
        let image = image_map.get(stem).cloned();
        if require_images && image.is_none() {
            return Err(Error::Mismatch(format!(
                "no image for {} in {} (looked for {stem}.<image extension>)",
                path.display(),
                images.map(|p| p.display().to_string()).unwrap_or_default()
            )));
        }
        entries.push(Entry { id: stem.to_string(), features: path, image, size: None });
    }
    sort_unique(entries, dir)
}

/// Ids of `entries` as a sorted map to their positions (for merge checks).
pub fn ids(entries: &[Entry]) -> BTreeMap<&str, usize> {
    entries.iter().enumerate().map(|(i, e)| (e.id.as_str(), i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition() {
        let entries: Vec<Entry> = (0..10)
            .map(|i| Entry { id: format!("img{i:02}"), features: format!("f{i}.npy").into(), image: None, size: None })
            .collect();
        let mut seen = vec![0; 10];
        for i in 0..3 {
            let s = Shard::parse(&format!("{i}/3")).unwrap();
            for e in s.select(&entries) {
                seen[e.id[3..].parse::<usize>().unwrap()] += 1;
            }
        }
        assert_eq!(seen, vec![1; 10]);
        assert_eq!(Shard::parse("0/3").unwrap().select(&entries).len(), 4);
        assert_eq!(Shard::parse("2/3").unwrap().select(&entries).len(), 3);
        for bad in ["3/3", "1", "a/2", "0/0", "-1/2"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("3/16").unwrap().stem(), "shard-00003-of-00016");
    }

    #[test]
    fn manifest_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.tsv");
        std::fs::write(&p, "features\timage\n# comment\nb.npy\timgs/x.JPEG\na.npy\t\n").unwrap();
        let e = read_manifest(&p).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "a");
        assert_eq!(e[0].features, dir.path().join("a.npy"));
        assert_eq!(e[1].id, "x");
        assert_eq!(e[1].image.as_deref(), Some(dir.path().join("imgs/x.JPEG").as_path()));

        std::fs::write(&p, "id\tfeatures\nq\ta.npy\nq\tb.npy\n").unwrap();
        let err = read_manifest(&p).unwrap_err().to_string();
        assert!(err.contains("m.tsv") && err.contains("\"q\"") && err.contains("unique"), "{err}");

        std::fs::write(&p, "id\tfeatures\twidth\theight\nq\ta.npy\t10\n").unwrap();
        let err = read_manifest(&p).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("3 tab-separated fields"), "{err}");

        std::fs::write(&p, "id\tfeatures\twidth\theight\nq\ta.npy\t10\t0\n").unwrap();
        let err = read_manifest(&p).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("height \"0\""), "{err}");

        std::fs::write(&p, "file\tfeatures\n").unwrap();
        let err = read_manifest(&p).unwrap_err().to_string();
        assert!(err.contains("unknown column \"file\""), "{err}");
    }

    #[test]
    fn directories() {
        let dir = tempfile::tempdir().unwrap();
        let (f, i) = (dir.path().join("f"), dir.path().join("i"));
        std::fs::create_dir_all(&f).unwrap();
        std::fs::create_dir_all(&i).unwrap();
        for n in ["b.npy", "a.safetensors", "notes.txt"] {
            std::fs::write(f.join(n), b"").unwrap();
        }
        std::fs::write(i.join("a.JPEG"), b"").unwrap();
        let e = from_dirs(&f, Some(&i), false).unwrap();
        assert_eq!(e.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(e[0].image.as_deref(), Some(i.join("a.JPEG").as_path()));
        assert!(e[1].image.is_none());
        let err = from_dirs(&f, Some(&i), true).unwrap_err().to_string();
        assert!(err.contains("b.npy") && err.contains("no image"), "{err}");
    }
}

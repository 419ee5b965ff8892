//! Row order of prediction files.
//!
//! A prediction file is a matrix whose rows are images; which image each row
//! belongs to is never guessed silently. It comes from an image list
//! (`--images`): an ImageNetV2-style dataset JSON (`image_filenames` =
//! `[[name, wnid], ...]`, which also gives each image's original label), a JSON
//! array of names, a text file with one name per line, or a CSV/TSV whose first
//! column is the name (a second column, if it holds a class, is the original
//! label). Or it comes from a built-in order (see [`BUILTIN_ORDERS`]).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use crate::classes::ClassTable;
use crate::error::{Error, Result};
use crate::ids::{ilsvrc2012_val_name, join_key, ILSVRC2012_VAL_LEN};

/// Built-in orders: (name, number of images, description).
pub const BUILTIN_ORDERS: &[(&str, usize, &str)] = &[(
    "ilsvrc2012-val",
    ILSVRC2012_VAL_LEN,
    "the 50,000 ILSVRC2012 validation images sorted by file name (ILSVRC2012_val_00000001.JPEG first)",
)];

/// The images that the rows of a prediction file belong to.
#[derive(Debug, Clone)]
pub struct ImageOrder {
    /// Image names, one per row.
    pub names: Vec<String>,
    /// Original (single) label of each row, when the list carries it.
    pub original: Option<Vec<u32>>,
    /// Where the order came from (file path or built-in name), for messages.
    pub source: String,
}

impl ImageOrder {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A built-in order by name.
    pub fn builtin(name: &str) -> Option<ImageOrder> {
        match name {
            "ilsvrc2012-val" => Some(ImageOrder {
                names: (0..ILSVRC2012_VAL_LEN).map(ilsvrc2012_val_name).collect(),
                original: None,
                source: "built-in order ilsvrc2012-val".into(),
            }),
            _ => None,
        }
    }

    /// The built-in order whose length is `rows`, if exactly one fits.
    pub fn builtin_for_len(rows: usize) -> Option<(&'static str, ImageOrder)> {
        BUILTIN_ORDERS
            .iter()
            .find(|(_, n, _)| *n == rows)
            .and_then(|(name, _, _)| Some((*name, ImageOrder::builtin(name)?)))
    }

    /// Reads an image list file (see the module documentation for the forms).
    pub fn load(path: &Path, classes: &ClassTable) -> Result<ImageOrder> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let source = path.display().to_string();
        let t = text.trim_start();
        let (names, original) = if t.starts_with('{') || t.starts_with('[') {
            let value: Value = serde_json::from_str(&text).map_err(|e| {
                Error::format(path, format!("line {}, column {}", e.line(), e.column()), format!("invalid JSON: {e}"))
            })?;
            match &value {
                Value::Object(_) => {
                    let entries = crate::labels::dataset_entries(&value, path, classes)?;
                    let (n, o): (Vec<String>, Vec<u32>) = entries.into_iter().unzip();
                    (n, Some(o))
                }
                Value::Array(a) => {
                    let names = a
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            v.as_str().map(str::to_string).ok_or_else(|| {
                                Error::format(
                                    path,
                                    format!("element {i}"),
                                    format!("expected an image name string, found {v}"),
                                )
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    (names, None)
                }
                _ => {
                    return Err(Error::format(path, "top level", "expected a dataset JSON object or an array of names"))
                }
            }
        } else {
            parse_text_list(&text, path, classes)?
        };
        if names.is_empty() {
            return Err(Error::format(path, "whole file", "no image names found"));
        }
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            if let Some(prev) = seen.insert(join_key(n), i) {
                return Err(Error::format(
                    path,
                    format!("entry {}", i + 1),
                    format!(
                        "image {n:?} is listed twice (first as entry {}); each row must be a distinct image",
                        prev + 1
                    ),
                ));
            }
        }
        Ok(ImageOrder { names, original, source })
    }
}

fn parse_text_list(text: &str, path: &Path, classes: &ClassTable) -> Result<(Vec<String>, Option<Vec<u32>>)> {
    let mut names = Vec::new();
    let mut original: Vec<Option<u32>> = Vec::new();
    for (lineno, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut cells =
            if line.contains('\t') { line.split('\t').collect::<Vec<_>>() } else { line.split(',').collect() };
        for c in &mut cells {
            *c = c.trim().trim_matches('"');
        }
        let name = cells[0];
        let label = cells.get(1).and_then(|c| classes.resolve(c)).map(|c| c as u32);
        if names.is_empty() && lineno == 0 && is_header(name) {
            continue;
        }
        if name.is_empty() {
            return Err(Error::format(path, format!("line {}, column 1", lineno + 1), "expected an image name"));
        }
        names.push(name.to_string());
        original.push(label);
    }
    let original = if !original.is_empty() && original.iter().all(Option::is_some) {
        Some(original.into_iter().flatten().collect())
    } else {
        None
    };
    Ok((names, original))
}

fn is_header(cell: &str) -> bool {
    matches!(
        cell.to_ascii_lowercase().as_str(),
        "image" | "images" | "name" | "filename" | "file_name" | "file" | "path" | "id" | "image_id" | "img"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_val_order() {
        let o = ImageOrder::builtin("ilsvrc2012-val").unwrap();
        assert_eq!(o.len(), 50_000);
        assert_eq!(o.names[0], "ILSVRC2012_val_00000001.JPEG");
        assert_eq!(o.names[49_999], "ILSVRC2012_val_00050000.JPEG");
        assert!(ImageOrder::builtin_for_len(50_000).is_some());
        assert!(ImageOrder::builtin_for_len(10).is_none());
    }

    #[test]
    fn text_and_csv_lists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("imgs.csv");
        std::fs::write(&p, "filename,label\na.jpg,n01440764\nb.jpg,5\n").unwrap();
        let o = ImageOrder::load(&p, ClassTable::imagenet()).unwrap();
        assert_eq!(o.names, vec!["a.jpg", "b.jpg"]);
        assert_eq!(o.original, Some(vec![0, 5]));
        std::fs::write(&p, "a.jpg\nb.jpg\na.JPG\n").unwrap();
        let e = ImageOrder::load(&p, ClassTable::imagenet()).unwrap_err().to_string();
        assert!(e.contains("entry 3") && e.contains("listed twice"), "{e}");
    }
}

//! The Region task: validation of a submitted page, and the class search
//! behind its suggestions.
//!
//! One image per page. The annotator draws a box (press, drag, release),
//! then picks its class from ranked suggestions: the relabel region query
//! when the server has a model ([`crate::server::RegionSuggester`]),
//! otherwise a search over class names. A page submission:
//!
//! ```json
//! {"assignment": 7, "key": "…", "time_spent_ms": 8120,
//!  "imageID": 12, "originalSize": {"width": 500, "height": 375},
//!  "onPageSize": {"width": 640, "height": 480}, "imagePosition": {"x": 10, "y": 90},
//!  "regions": [{"box": {"x0": 0.1, "y0": 0.2, "x1": 0.5, "y1": 0.9},
//!               "label": "n02085620", "query": "chihua", "source": "search",
//!               "suggestions": ["n02085620"],
//!               "drawTrace": [{"x": 0.1, "y": 0.2, "time": 900}, {"x": 0.5, "y": 0.9, "time": 1400}],
//!               "time": 2100}],
//!  "mouseTracking": [{"x": 0.1, "y": 0.2, "time": 120}]}
//! ```
//!
//! Boxes and traces are normalised to the image; `label` is a class key of
//! the project or an ImageNet WordNet id.

use serde_json::{json, Value};

use labelscope_core::classes::ClassTable;

use crate::browse::ValidRecord;
use crate::fields::{array, in_order, number, obj, only_keys, points, text, MAX_TIME, MAX_TRACE};

/// Most regions per image.
pub const MAX_REGIONS: usize = 200;
/// Most suggestions recorded per region.
pub const MAX_SUGGESTIONS: usize = 50;

/// What a Region page must hold.
pub struct RegionContext<'a> {
    /// The page's image id.
    pub image: i64,
    /// Whether a class key may label a region.
    pub is_class: &'a dyn Fn(&str) -> bool,
}

/// Validates a Region page submission; returns its one record (selected =
/// at least one region).
pub fn validate_region(v: &Value, ctx: &RegionContext<'_>) -> Result<ValidRecord, String> {
    let page = crate::fields::one_image(v, &["regions"], ctx.image, "time")?;
    let (top, at, id) = (page.top, "submission", page.id);
    let mut regions = Vec::new();
    let mut last = 0.0;
    for (i, r) in array(top, "regions", at, MAX_REGIONS)?.iter().enumerate() {
        let at = format!("regions[{i}]");
        let r = obj(r, &at)?;
        only_keys(r, &["box", "label", "query", "source", "suggestions", "drawTrace", "time"], &at)?;
        let bat = format!("{at}.box");
        let b = obj(r.get("box").unwrap_or(&Value::Null), &bat)?;
        only_keys(b, &["x0", "y0", "x1", "y1"], &bat)?;
        let [x0, y0, x1, y1] = [
            number(b, "x0", &bat, 0.0, 1.0)?,
            number(b, "y0", &bat, 0.0, 1.0)?,
            number(b, "x1", &bat, 0.0, 1.0)?,
            number(b, "y1", &bat, 0.0, 1.0)?,
        ];
        if x0 >= x1 || y0 >= y1 {
            return Err(format!("{bat}: ({x0}, {y0})–({x1}, {y1}) is empty; expected x0 < x1 and y0 < y1"));
        }
        let label = match r.get("label").and_then(Value::as_str) {
            Some(l) if (ctx.is_class)(l) => l,
            Some(l) => return Err(format!("{at}.label: {l:?} is not a class of this project")),
            None => return Err(format!("{at}.label: expected a class key")),
        };
        let query = text(r, "query", &at, 200)?;
        let source = match r.get("source").and_then(Value::as_str) {
            Some(s @ ("model" | "search")) => s,
            _ => return Err(format!("{at}.source: expected \"model\" or \"search\"")),
        };
        let mut suggestions = Vec::new();
        for (k, s) in array(r, "suggestions", &at, MAX_SUGGESTIONS)?.iter().enumerate() {
            match s.as_str() {
                Some(s) if (ctx.is_class)(s) => suggestions.push(json!(s)),
                _ => return Err(format!("{at}.suggestions[{k}]: expected a class key")),
            }
        }
        let trace = points(r, "drawTrace", &at, MAX_TRACE, "time")?;
        if trace.is_empty() {
            return Err(format!("{at}.drawTrace: expected the points of the drawing (at least one)"));
        }
        let t = number(r, "time", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "time")?;
        regions.push(json!({"box": {"x0": x0, "y0": y0, "x1": x1, "y1": y1}, "label": label, "query": query,
                            "source": source, "suggestions": suggestions, "drawTrace": trace, "time": t}));
    }
    Ok(ValidRecord {
        image_id: id,
        selected: !regions.is_empty(),
        data: json!({
            "imageID": id,
            "originalSize": page.original,
            "onPageSize": page.on_page,
            "imagePosition": page.position,
            "regions": regions,
            "mouseTracking": page.trace,
        }),
    })
}

/// One ranked suggestion.
#[derive(Debug, Clone, PartialEq)]
pub struct Suggestion {
    /// Class key (WordNet id).
    pub wnid: String,
    /// Display name.
    pub name: String,
    /// Score: a probability (model) or a match rank score (search; higher is better).
    pub score: f64,
}

/// Search over class names and synonyms: the `k` best matches of `query`
/// among `extra` (project classes: key, name) and the ImageNet classes.
/// Ranking: exact name or synonym (3), a name or synonym that starts with
/// the query (2), a word that starts with it (1.5), containing it anywhere
/// (1); ties keep class order. Case and surrounding spaces are ignored; an
/// empty query gives nothing.
pub fn search_classes(query: &str, extra: &[(String, String)], k: usize) -> Vec<Suggestion> {
    let q = query.trim().to_lowercase();
    if q.is_empty() || k == 0 {
        return Vec::new();
    }
    let score_of = |names: &mut dyn Iterator<Item = &str>| -> f64 {
        let mut best: f64 = 0.0;
        for n in names {
            let n = n.trim().to_lowercase();
            let s = if n == q {
                3.0
            } else if n.starts_with(&q) {
                2.0
            } else if n.split(|c: char| !c.is_alphanumeric()).any(|w| w.starts_with(&q)) {
                1.5
            } else if n.contains(&q) {
                1.0
            } else {
                0.0
            };
            best = best.max(s);
        }
        best
    };
    let mut out: Vec<Suggestion> = Vec::new();
    for (key, name) in extra {
        let s = score_of(&mut [name.as_str(), key.as_str()].into_iter());
        if s > 0.0 {
            out.push(Suggestion { wnid: key.clone(), name: name.clone(), score: s });
        }
    }
    let table = ClassTable::imagenet();
    for c in table.classes() {
        if out.iter().any(|o| o.wnid == c.wnid) {
            continue;
        }
        let s = score_of(&mut c.names.iter().map(String::as_str).chain(std::iter::once(c.wnid.as_str())));
        if s > 0.0 {
            out.push(Suggestion { wnid: c.wnid.clone(), name: c.name().to_string(), score: s });
        }
    }
    // Stable: ties keep their order.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(regions: Value) -> Value {
        json!({"assignment": 1, "key": "k", "time_spent_ms": 4000, "imageID": 5,
               "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 800, "height": 600},
               "imagePosition": {"x": 0, "y": 80}, "regions": regions, "mouseTracking": []})
    }

    fn region(label: &str, b: [f64; 4], t: f64) -> Value {
        json!({"box": {"x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3]}, "label": label, "query": "dog",
               "source": "search", "suggestions": [label],
               "drawTrace": [{"x": b[0], "y": b[1], "time": t - 100.0}, {"x": b[2], "y": b[3], "time": t - 50.0}],
               "time": t})
    }

    #[test]
    fn regions_are_checked() {
        let is_class = |c: &str| c.starts_with('n');
        let ctx = RegionContext { image: 5, is_class: &is_class };
        let r = validate_region(&page(json!([region("n1", [0.1, 0.2, 0.5, 0.9], 500.0)])), &ctx).unwrap();
        assert!(r.selected);
        assert_eq!(r.data["regions"][0]["box"]["x1"], 0.5);
        assert!(!validate_region(&page(json!([])), &ctx).unwrap().selected);
        let cases = vec![
            (json!([region("n1", [0.5, 0.2, 0.1, 0.9], 500.0)]), "is empty"),
            (json!([region("cat", [0.1, 0.2, 0.5, 0.9], 500.0)]), "regions[0].label"),
            (json!([region("n1", [0.1, 0.2, 1.5, 0.9], 500.0)]), "regions[0].box.x1"),
            (
                json!([region("n1", [0.1, 0.2, 0.5, 0.9], 500.0), region("n1", [0.1, 0.2, 0.5, 0.9], 400.0)]),
                "time order",
            ),
        ];
        for (regions, what) in cases {
            let e = validate_region(&page(regions), &ctx).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn class_search_ranks_exact_then_prefix_then_word_then_substring() {
        let s = search_classes("Tabby", &[], 5);
        assert_eq!(s[0].name, "tabby");
        assert_eq!(s[0].score, 3.0);
        let s = search_classes("golden", &[], 10);
        assert!(s.iter().any(|x| x.name == "golden retriever"), "{s:?}");
        assert!(s.iter().all(|x| x.score >= 1.0));
        let extra = vec![("cat-toy".to_string(), "cat toy".to_string())];
        let s = search_classes("cat", &extra, 50);
        assert_eq!(s[0].wnid, "cat-toy"); // prefix (2) ranks above word matches (1.5) ...
        assert!(s.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(search_classes("   ", &[], 5).is_empty());
        assert!(search_classes("zzzzqqq", &[], 5).is_empty());
    }
}

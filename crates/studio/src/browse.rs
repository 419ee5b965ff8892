//! The Browse task (ImageNet / ImageNetV2 style): validation of a submitted
//! page.
//!
//! A page submission is a JSON object:
//!
//! ```json
//! {"assignment": 7, "key": "…", "time_spent_ms": 41250,
//!  "viewport": {"width": 1280, "height": 800},
//!  "images": [
//!    {"imageID": 12,
//!     "originalSize": {"width": 500, "height": 375},
//!     "onPageSize": {"width": 150, "height": 113},
//!     "imagePosition": {"x": 24, "y": 180},
//!     "hoveredRecord": [{"action": "enter", "time": 5120}, {"action": "leave", "time": 6010}],
//!     "mouseTracking": [{"x": 0.12, "y": 0.40, "time": 5124}],
//!     "selectedRecord": [{"x": 0.46, "y": 0.52, "time": 5730}],
//!     "selected": true}
//!  ]}
//! ```
//!
//! Positions in `mouseTracking` and `selectedRecord` are normalised to the
//! image (0 = left/top edge, 1 = right/bottom edge); times are milliseconds
//! since the page was shown. `selected` must be true exactly when the number
//! of clicks is odd (a click toggles). Every image of the page appears once.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// Most trace samples kept per image (16 ms sampling: over 5 minutes).
pub const MAX_TRACE: usize = 20_000;
/// Most clicks or hover events per image.
pub const MAX_EVENTS: usize = 2_000;

/// What a page must hold.
pub struct PageContext<'a> {
    /// The image ids of the page.
    pub expected: &'a HashSet<i64>,
}

/// One validated per-image record.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRecord {
    /// Image id.
    pub image_id: i64,
    /// Selected (odd number of clicks).
    pub selected: bool,
    /// The record, with only the known fields.
    pub data: Value,
}

fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{at}: expected an object"))
}

fn number(o: &Map<String, Value>, key: &str, at: &str, lo: f64, hi: f64) -> Result<f64, String> {
    match o.get(key).and_then(Value::as_f64) {
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        _ => Err(format!("{at}.{key}: expected a number from {lo} to {hi}")),
    }
}

fn only_keys(o: &Map<String, Value>, keys: &[&str], at: &str) -> Result<(), String> {
    match o.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}.{k}: unknown field; expected {}", keys.join(", "))),
        None => Ok(()),
    }
}

const MAX_TIME: f64 = 86_400_000.0;
const MAX_PIXELS: f64 = 100_000.0;

fn size(o: &Map<String, Value>, key: &str, at: &str) -> Result<Value, String> {
    let at = format!("{at}.{key}");
    let s = obj(o.get(key).unwrap_or(&Value::Null), &at)?;
    only_keys(s, &["width", "height"], &at)?;
    let w = number(s, "width", &at, 1.0, MAX_PIXELS)?;
    let h = number(s, "height", &at, 1.0, MAX_PIXELS)?;
    Ok(serde_json::json!({"width": w, "height": h}))
}

fn points(o: &Map<String, Value>, key: &str, at: &str, max: usize) -> Result<Vec<Value>, String> {
    let at = format!("{at}.{key}");
    let list = o.get(key).and_then(Value::as_array).ok_or_else(|| format!("{at}: expected an array"))?;
    if list.len() > max {
        return Err(format!("{at}: {} entries; at most {max} are accepted", list.len()));
    }
    let mut out = Vec::with_capacity(list.len());
    let mut last = 0.0;
    for (i, p) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let p = obj(p, &at)?;
        only_keys(p, &["x", "y", "time"], &at)?;
        let x = number(p, "x", &at, 0.0, 1.0)?;
        let y = number(p, "y", &at, 0.0, 1.0)?;
        let t = number(p, "time", &at, 0.0, MAX_TIME)?;
        if t < last {
            return Err(format!("{at}.time: {t} is earlier than the entry before ({last}); expected time order"));
        }
        last = t;
        out.push(serde_json::json!({"x": x, "y": y, "time": t}));
    }
    Ok(out)
}

/// Validates a Browse page submission against the page's images; returns
/// one record per image, or a message naming the field and what was
/// expected.
pub fn validate_page(v: &Value, ctx: &PageContext<'_>) -> Result<Vec<ValidRecord>, String> {
    let top = obj(v, "submission")?;
    only_keys(top, &["assignment", "key", "time_spent_ms", "viewport", "images"], "submission")?;
    number(top, "time_spent_ms", "submission", 0.0, MAX_TIME)?;
    if let Some(vp) = top.get("viewport") {
        let vp = obj(vp, "viewport")?;
        only_keys(vp, &["width", "height"], "viewport")?;
        number(vp, "width", "viewport", 1.0, MAX_PIXELS)?;
        number(vp, "height", "viewport", 1.0, MAX_PIXELS)?;
    }
    let list = top.get("images").and_then(Value::as_array).ok_or("images: expected an array")?;
    let mut seen = HashSet::with_capacity(list.len());
    let mut out = Vec::with_capacity(list.len());
    for (i, r) in list.iter().enumerate() {
        let at = format!("images[{i}]");
        let o = obj(r, &at)?;
        only_keys(
            o,
            &[
                "imageID",
                "originalSize",
                "onPageSize",
                "imagePosition",
                "hoveredRecord",
                "mouseTracking",
                "selectedRecord",
                "selected",
            ],
            &at,
        )?;
        let id =
            o.get("imageID").and_then(Value::as_i64).ok_or_else(|| format!("{at}.imageID: expected an integer"))?;
        if !ctx.expected.contains(&id) {
            return Err(format!("{at}.imageID: {id} is not an image of this page"));
        }
        if !seen.insert(id) {
            return Err(format!("{at}.imageID: {id} appears twice"));
        }
        let original = size(o, "originalSize", &at)?;
        let on_page = size(o, "onPageSize", &at)?;
        let pos_at = format!("{at}.imagePosition");
        let pos = obj(o.get("imagePosition").unwrap_or(&Value::Null), &pos_at)?;
        only_keys(pos, &["x", "y"], &pos_at)?;
        let px = number(pos, "x", &pos_at, -MAX_PIXELS, MAX_PIXELS)?;
        let py = number(pos, "y", &pos_at, -MAX_PIXELS, MAX_PIXELS)?;
        let hov_at = format!("{at}.hoveredRecord");
        let hovers =
            o.get("hoveredRecord").and_then(Value::as_array).ok_or_else(|| format!("{hov_at}: expected an array"))?;
        if hovers.len() > MAX_EVENTS {
            return Err(format!("{hov_at}: {} entries; at most {MAX_EVENTS} are accepted", hovers.len()));
        }
        let mut hovered = Vec::with_capacity(hovers.len());
        for (k, h) in hovers.iter().enumerate() {
            let at = format!("{hov_at}[{k}]");
            let h = obj(h, &at)?;
            only_keys(h, &["action", "time"], &at)?;
            let action = match h.get("action").and_then(Value::as_str) {
                Some(a @ ("enter" | "leave")) => a,
                _ => return Err(format!("{at}.action: expected \"enter\" or \"leave\"")),
            };
            let t = number(h, "time", &at, 0.0, MAX_TIME)?;
            hovered.push(serde_json::json!({"action": action, "time": t}));
        }
        let trace = points(o, "mouseTracking", &at, MAX_TRACE)?;
        let clicks = points(o, "selectedRecord", &at, MAX_EVENTS)?;
        let selected = match o.get("selected") {
            Some(Value::Bool(b)) => *b,
            _ => return Err(format!("{at}.selected: expected true or false")),
        };
        if selected != (clicks.len() % 2 == 1) {
            return Err(format!(
                "{at}.selected: {selected} with {} click(s); a click toggles the selection, so expected {}",
                clicks.len(),
                clicks.len() % 2 == 1
            ));
        }
        out.push(ValidRecord {
            image_id: id,
            selected,
            data: serde_json::json!({
                "imageID": id,
                "originalSize": original,
                "onPageSize": on_page,
                "imagePosition": {"x": px, "y": py},
                "hoveredRecord": hovered,
                "mouseTracking": trace,
                "selectedRecord": clicks,
                "selected": selected,
            }),
        });
    }
    if let Some(missing) = ctx.expected.iter().filter(|id| !seen.contains(id)).min() {
        return Err(format!(
            "images: {} of the page's {} images are missing (first: {missing}); expected a record for every image",
            ctx.expected.len() - seen.len(),
            ctx.expected.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: i64, clicks: usize) -> Value {
        let sel: Vec<Value> = (0..clicks).map(|k| json!({"x": 0.5, "y": 0.25, "time": 100 + k})).collect();
        json!({"imageID": id, "originalSize": {"width": 500, "height": 375}, "onPageSize": {"width": 150, "height": 112.5},
               "imagePosition": {"x": 10, "y": 20},
               "hoveredRecord": [{"action": "enter", "time": 90}, {"action": "leave", "time": 200}],
               "mouseTracking": [{"x": 0.1, "y": 0.2, "time": 91}, {"x": 0.5, "y": 0.25, "time": 99}],
               "selectedRecord": sel, "selected": clicks % 2 == 1})
    }

    fn page(records: Vec<Value>) -> Value {
        json!({"assignment": 1, "key": "k", "time_spent_ms": 5000, "viewport": {"width": 1280, "height": 800}, "images": records})
    }

    #[test]
    fn a_valid_page() {
        let expected: HashSet<i64> = [3, 4].into();
        let out = validate_page(&page(vec![record(3, 1), record(4, 2)]), &PageContext { expected: &expected }).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out[0].selected && !out[1].selected);
        assert_eq!(out[0].data["selectedRecord"][0]["x"], 0.5);
    }

    #[test]
    fn invalid_pages_name_the_field() {
        let expected: HashSet<i64> = [3, 4].into();
        let ctx = PageContext { expected: &expected };
        let mut wrong_sel = record(4, 2);
        wrong_sel["selected"] = json!(true);
        let mut out_of_image = record(4, 0);
        out_of_image["mouseTracking"][1]["x"] = json!(1.5);
        let mut backwards = record(4, 0);
        backwards["mouseTracking"][1]["time"] = json!(10);
        let mut extra = record(4, 0);
        extra["script"] = json!("<script>");
        let mut bad_hover = record(4, 0);
        bad_hover["hoveredRecord"][0]["action"] = json!("click");
        let cases = vec![
            (page(vec![record(3, 1)]), "missing"),
            (page(vec![record(3, 1), record(3, 1)]), "appears twice"),
            (page(vec![record(3, 1), record(9, 1)]), "not an image of this page"),
            (page(vec![record(3, 1), wrong_sel]), "images[1].selected"),
            (page(vec![record(3, 1), out_of_image]), "images[1].mouseTracking[1].x"),
            (page(vec![record(3, 1), backwards]), "time order"),
            (page(vec![record(3, 1), extra]), "images[1].script: unknown field"),
            (page(vec![record(3, 1), bad_hover]), "hoveredRecord[0].action"),
            (json!({"assignment": 1, "key": "k", "images": []}), "time_spent_ms"),
            (json!([1, 2]), "submission: expected an object"),
        ];
        for (v, what) in cases {
            let e = validate_page(&v, &ctx).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
    }
}

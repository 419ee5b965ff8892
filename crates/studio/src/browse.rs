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

use serde_json::Value;

use crate::fields::{
    array, boolean, number, obj, only_keys, points, position, size, submission, MAX_EVENTS, MAX_TIME, MAX_TRACE,
};

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
    /// Selected (odd number of clicks; for the one-image tasks: whether the
    /// page produced a label — an icon, a "yes", a region).
    pub selected: bool,
    /// The record, with only the known fields.
    pub data: Value,
}

/// Validates a Browse page submission against the page's images; returns
/// one record per image, or a message naming the field and what was
/// expected.
pub fn validate_page(v: &Value, ctx: &PageContext<'_>) -> Result<Vec<ValidRecord>, String> {
    let top = submission(v, &["images"])?;
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
        let pos = position(o, "imagePosition", &at)?;
        let hov_at = format!("{at}.hoveredRecord");
        let hovers = array(o, "hoveredRecord", &at, MAX_EVENTS)?;
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
        let trace = points(o, "mouseTracking", &at, MAX_TRACE, "time")?;
        let clicks = points(o, "selectedRecord", &at, MAX_EVENTS, "time")?;
        let selected = boolean(o, "selected", &at)?;
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
                "imagePosition": pos,
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

//! The Label task (free labelling, Shankar et al. 2020): validation of a
//! submitted page.
//!
//! One image per page. The labeler finds a class with the class-name search
//! (the Region task's search over the project's classes and the ImageNet
//! table) and picks exactly one. With the escape hatch ("I am not sure / the
//! image shows another object") the labeler also picks an alternative class.
//! A page submission:
//!
//! ```json
//! {"assignment": 7, "key": "…", "time_spent_ms": 6120,
//!  "imageID": 12, "originalSize": {"width": 500, "height": 375},
//!  "onPageSize": {"width": 640, "height": 480}, "imagePosition": {"x": 10, "y": 90},
//!  "label": "n02085620", "escape": true, "alternative": "n02085782",
//!  "labelHistory": [{"target": "label", "label": "n02085620", "query": "chihua", "time": 2400},
//!                   {"target": "alternative", "label": "n02085782", "query": "japanese", "time": 5100}],
//!  "escapeHistory": [{"checked": true, "time": 3900}],
//!  "mouseTracking": [{"x": 0.1, "y": 0.2, "time": 120}]}
//! ```
//!
//! `label` must be the last `labelHistory` choice for the label, `escape`
//! the last `escapeHistory` state (false when there is none), and
//! `alternative` — given only with the escape hatch, `null` or absent
//! otherwise — the last choice for the alternative, a class other than the
//! label. Times are milliseconds since the page was shown. The stored record
//! adds `timeSpent` (the page's `time_spent_ms`).

use serde_json::{json, Map, Value};

use crate::browse::ValidRecord;
use crate::fields::{array, boolean, in_order, number, obj, only_keys, text, MAX_EVENTS, MAX_TIME};

/// What a Label page must hold.
pub struct LabelContext<'a> {
    /// The page's image id.
    pub image: i64,
    /// Whether a class key may be chosen.
    pub is_class: &'a dyn Fn(&str) -> bool,
}

fn class_key<'a>(o: &'a Map<String, Value>, key: &str, at: &str, ctx: &LabelContext<'_>) -> Result<&'a str, String> {
    match o.get(key) {
        Some(Value::String(l)) if (ctx.is_class)(l) => Ok(l),
        Some(Value::String(l)) => Err(format!("{at}.{key}: {l:?} is not a class of this project")),
        _ => Err(format!("{at}.{key}: expected a class key (for example a WordNet id such as \"n02085620\")")),
    }
}

/// Validates a Label page submission; returns its one record (selected:
/// always, every page is labelled).
pub fn validate_label(v: &Value, ctx: &LabelContext<'_>) -> Result<ValidRecord, String> {
    let page = crate::fields::one_image(
        v,
        &["label", "escape", "alternative", "labelHistory", "escapeHistory"],
        ctx.image,
        "time",
    )?;
    let (top, at, id) = (page.top, "submission", page.id);
    let time_spent = number(top, "time_spent_ms", at, 0.0, MAX_TIME)?;
    let label = class_key(top, "label", at, ctx)?;
    let escape = boolean(top, "escape", at)?;
    let alternative = match top.get("alternative") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(_) if !escape => {
            return Err(
                "submission.alternative: an alternative is given only with the escape hatch (escape is false)".into()
            )
        }
        Some(_) => Some(class_key(top, "alternative", at, ctx)?),
    };
    if escape && alternative.is_none() {
        return Err("submission.alternative: the escape hatch is marked; expected the alternative class".into());
    }
    if alternative == Some(label) {
        return Err(format!("submission.alternative: {label:?} is the label itself; expected another class"));
    }
    let mut history = Vec::new();
    let (mut last_label, mut last_alt): (Option<&str>, Option<&str>) = (None, None);
    let mut last = 0.0;
    for (i, h) in array(top, "labelHistory", at, MAX_EVENTS)?.iter().enumerate() {
        let at = format!("labelHistory[{i}]");
        let h = obj(h, &at)?;
        only_keys(h, &["target", "label", "query", "time"], &at)?;
        let target = match h.get("target").and_then(Value::as_str) {
            Some(t @ ("label" | "alternative")) => t,
            _ => return Err(format!("{at}.target: expected \"label\" or \"alternative\"")),
        };
        let l = class_key(h, "label", &at, ctx)?;
        let query = text(h, "query", &at, 200)?;
        let t = number(h, "time", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "time")?;
        if target == "label" {
            last_label = Some(l);
        } else {
            last_alt = Some(l);
        }
        history.push(json!({"target": target, "label": l, "query": query, "time": t}));
    }
    if last_label != Some(label) {
        return Err(match last_label {
            Some(l) => format!("label: {label:?} is not the last label chosen in labelHistory ({l:?})"),
            None => format!("label: {label:?} has no entry in labelHistory"),
        });
    }
    if let Some(a) = alternative {
        if last_alt != Some(a) {
            return Err(match last_alt {
                Some(l) => format!("alternative: {a:?} is not the last alternative chosen in labelHistory ({l:?})"),
                None => format!("alternative: {a:?} has no entry in labelHistory"),
            });
        }
    }
    let mut escapes = Vec::new();
    let mut checked = false;
    let mut last = 0.0;
    for (i, e) in array(top, "escapeHistory", at, MAX_EVENTS)?.iter().enumerate() {
        let at = format!("escapeHistory[{i}]");
        let e = obj(e, &at)?;
        only_keys(e, &["checked", "time"], &at)?;
        checked = boolean(e, "checked", &at)?;
        let t = number(e, "time", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "time")?;
        escapes.push(json!({"checked": checked, "time": t}));
    }
    if checked != escape {
        return Err(format!("escape: {escape} is not the last state in escapeHistory ({checked})"));
    }
    Ok(ValidRecord {
        image_id: id,
        selected: true,
        data: json!({
            "imageID": id,
            "originalSize": page.original,
            "onPageSize": page.on_page,
            "imagePosition": page.position,
            "label": label,
            "escape": escape,
            "alternative": alternative,
            "labelHistory": history,
            "escapeHistory": escapes,
            "timeSpent": time_spent,
            "mouseTracking": page.trace,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(target: &str, l: &str, t: f64) -> Value {
        json!({"target": target, "label": l, "query": "q", "time": t})
    }

    fn page(label: &str, escape: bool, alternative: Value) -> Value {
        let mut history = vec![choice("label", "n1", 100.0), choice("label", label, 200.0)];
        if let Some(a) = alternative.as_str() {
            history.push(choice("alternative", a, 400.0));
        }
        let escapes = if escape { json!([{"checked": true, "time": 300}]) } else { json!([]) };
        json!({"assignment": 1, "key": "k", "time_spent_ms": 4000, "imageID": 5,
               "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 800, "height": 600},
               "imagePosition": {"x": 0, "y": 80}, "label": label, "escape": escape, "alternative": alternative,
               "labelHistory": history, "escapeHistory": escapes, "mouseTracking": []})
    }

    #[test]
    fn valid_pages() {
        let is_class = |c: &str| c.starts_with('n');
        let ctx = LabelContext { image: 5, is_class: &is_class };
        let r = validate_label(&page("n2", true, json!("n3")), &ctx).unwrap();
        assert_eq!((r.data["label"].as_str(), r.data["alternative"].as_str()), (Some("n2"), Some("n3")));
        assert_eq!(r.data["timeSpent"], 4000.0);
        assert_eq!(r.data["labelHistory"].as_array().unwrap().len(), 3);
        let r = validate_label(&page("n2", false, Value::Null), &ctx).unwrap();
        assert_eq!(r.data["alternative"], Value::Null);
        assert_eq!(r.data["escape"], false);
    }

    #[test]
    fn invalid_pages_name_the_field() {
        let is_class = |c: &str| c.starts_with('n');
        let ctx = LabelContext { image: 5, is_class: &is_class };
        let mut missing = page("n2", false, Value::Null);
        missing.as_object_mut().unwrap().remove("label");
        let mut no_escape = page("n2", false, Value::Null);
        no_escape.as_object_mut().unwrap().remove("escape");
        let mut stale = page("n2", false, Value::Null);
        stale["label"] = json!("n1");
        let cases = vec![
            (missing, "submission.label: expected a class key"),
            (page("cat", false, Value::Null), "submission.label: \"cat\" is not a class"),
            (no_escape, "submission.escape"),
            (page("n2", false, json!("n3")), "submission.alternative: an alternative is given only with the escape"),
            (page("n2", true, Value::Null), "submission.alternative: the escape hatch is marked"),
            (page("n2", true, json!("dog")), "submission.alternative: \"dog\" is not a class"),
            (page("n2", true, json!("n2")), "is the label itself"),
            (stale, "not the last label chosen"),
        ];
        for (v, what) in cases {
            let e = validate_label(&v, &ctx).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let mut unchecked = page("n2", true, json!("n3"));
        unchecked["escapeHistory"] = json!([{"checked": true, "time": 300}, {"checked": false, "time": 350}]);
        assert!(validate_label(&unchecked, &ctx).unwrap_err().contains("escapeHistory"));
    }
}

//! The Verify task (ImageNet-ReaL / expert re-assessment style): validation
//! of a submitted page.
//!
//! One image per page with its proposed labels; each label is answered
//! yes / no / maybe (an answer can be changed; every click is kept), the
//! image can be flagged as problematic, and a free-text alternative label
//! can be given. A page submission:
//!
//! ```json
//! {"assignment": 7, "key": "…", "time_spent_ms": 6120,
//!  "imageID": 12, "originalSize": {"width": 500, "height": 375},
//!  "onPageSize": {"width": 640, "height": 480}, "imagePosition": {"x": 10, "y": 90},
//!  "answers": [{"label": "n02085620", "answer": "yes", "time": 2400},
//!              {"label": "n02085782", "answer": "no", "time": 3100}],
//!  "answerHistory": [{"label": "n02085620", "answer": "maybe", "time": 1900},
//!                    {"label": "n02085620", "answer": "yes", "time": 2400},
//!                    {"label": "n02085782", "answer": "no", "time": 3100}],
//!  "flags": {"wrong_original_label": false, "drawing": false, "heavy_edit": false, "inappropriate": false},
//!  "alternative": "",
//!  "mouseTracking": [{"x": 0.1, "y": 0.2, "time": 120}]}
//! ```
//!
//! Every proposed label has exactly one final answer, equal to its last
//! entry in `answerHistory` (same answer, same time); times are milliseconds
//! since the page was shown.

use serde_json::{json, Value};

use crate::browse::ValidRecord;
use crate::fields::{array, boolean, child, in_order, number, obj, only_keys, text, MAX_EVENTS, MAX_TIME};

/// The problematic-image flags, in the order pages show them.
pub const FLAGS: [&str; 4] = ["wrong_original_label", "drawing", "heavy_edit", "inappropriate"];

/// Longest accepted alternative label, in bytes.
pub const MAX_ALTERNATIVE: usize = 200;

/// What a Verify page must hold.
pub struct VerifyContext<'a> {
    /// The page's image id.
    pub image: i64,
    /// The proposed labels of the image.
    pub proposed: &'a [String],
}

fn answer(o: &serde_json::Map<String, Value>, at: &str) -> Result<&'static str, String> {
    match o.get("answer").and_then(Value::as_str) {
        Some("yes") => Ok("yes"),
        Some("no") => Ok("no"),
        Some("maybe") => Ok("maybe"),
        _ => Err(format!("{at}.answer: expected \"yes\", \"no\" or \"maybe\"")),
    }
}

/// Validates a Verify page submission; returns its one record (selected =
/// at least one label answered yes).
pub fn validate_verify(v: &Value, ctx: &VerifyContext<'_>) -> Result<ValidRecord, String> {
    let page = crate::fields::one_image(v, &["answers", "answerHistory", "flags", "alternative"], ctx.image, "time")?;
    let (top, at, id) = (page.top, "submission", page.id);
    let mut history: Vec<(usize, &'static str, f64)> = Vec::new();
    let mut history_json = Vec::new();
    let mut last = 0.0;
    for (i, h) in array(top, "answerHistory", at, MAX_EVENTS)?.iter().enumerate() {
        let at = format!("answerHistory[{i}]");
        let h = obj(h, &at)?;
        only_keys(h, &["label", "answer", "time"], &at)?;
        let label = h.get("label").and_then(Value::as_str).unwrap_or_default();
        let k = ctx
            .proposed
            .iter()
            .position(|p| p == label)
            .ok_or_else(|| format!("{at}.label: {label:?} is not a proposed label of this image"))?;
        let a = answer(h, &at)?;
        let t = number(h, "time", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "time")?;
        history.push((k, a, t));
        history_json.push(json!({"label": label, "answer": a, "time": t}));
    }
    let list = array(top, "answers", at, ctx.proposed.len())?;
    let mut finals: Vec<Option<(&'static str, f64)>> = vec![None; ctx.proposed.len()];
    for (i, f) in list.iter().enumerate() {
        let at = format!("answers[{i}]");
        let f = obj(f, &at)?;
        only_keys(f, &["label", "answer", "time"], &at)?;
        let label = f.get("label").and_then(Value::as_str).unwrap_or_default();
        let k = ctx
            .proposed
            .iter()
            .position(|p| p == label)
            .ok_or_else(|| format!("{at}.label: {label:?} is not a proposed label of this image"))?;
        if finals[k].is_some() {
            return Err(format!("{at}.label: {label:?} is answered twice"));
        }
        let a = answer(f, &at)?;
        let t = number(f, "time", &at, 0.0, MAX_TIME)?;
        match history.iter().rev().find(|(h, ..)| *h == k) {
            Some((_, ha, ht)) if *ha == a && (ht - t).abs() < 1e-6 => {}
            Some((_, ha, ht)) => {
                return Err(format!(
                    "{at}: {a:?} at {t} is not the last answer to {label:?} in answerHistory ({ha:?} at {ht})"
                ))
            }
            None => return Err(format!("{at}: {label:?} has no entry in answerHistory")),
        }
        finals[k] = Some((a, t));
    }
    if let Some(k) = finals.iter().position(Option::is_none) {
        return Err(format!(
            "answers: {:?} is not answered; expected yes, no or maybe for each of the {} proposed labels",
            ctx.proposed[k],
            ctx.proposed.len()
        ));
    }
    let flags_in = child(top, "flags", at)?;
    only_keys(flags_in, &FLAGS, "flags")?;
    let mut flags = serde_json::Map::new();
    for f in FLAGS {
        flags.insert(f.into(), json!(boolean(flags_in, f, "flags")?));
    }
    let alternative = text(top, "alternative", at, MAX_ALTERNATIVE)?.trim();
    if alternative.chars().any(char::is_control) {
        return Err("submission.alternative: control characters are not accepted".into());
    }
    let answers: Vec<Value> = finals
        .iter()
        .zip(ctx.proposed)
        .filter_map(|(f, l)| f.map(|(a, t)| json!({"label": l, "answer": a, "time": t})))
        .collect();
    Ok(ValidRecord {
        image_id: id,
        selected: finals.iter().any(|f| matches!(f, Some(("yes", _)))),
        data: json!({
            "imageID": id,
            "originalSize": page.original,
            "onPageSize": page.on_page,
            "imagePosition": page.position,
            "answers": answers,
            "answerHistory": history_json,
            "flags": flags,
            "alternative": alternative,
            "mouseTracking": page.trace,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(answers: Value, history: Value) -> Value {
        json!({"assignment": 1, "key": "k", "time_spent_ms": 4000, "imageID": 5,
               "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 800, "height": 600},
               "imagePosition": {"x": 0, "y": 80}, "answers": answers, "answerHistory": history,
               "flags": {"wrong_original_label": false, "drawing": true, "heavy_edit": false, "inappropriate": false},
               "alternative": "  Border collie ", "mouseTracking": []})
    }

    fn a(l: &str, ans: &str, t: f64) -> Value {
        json!({"label": l, "answer": ans, "time": t})
    }

    #[test]
    fn a_valid_page() {
        let proposed = vec!["n1".to_string(), "n2".to_string()];
        let ctx = VerifyContext { image: 5, proposed: &proposed };
        let v = page(
            json!([a("n2", "no", 300.0), a("n1", "yes", 250.0)]),
            json!([a("n1", "maybe", 100.0), a("n1", "yes", 250.0), a("n2", "no", 300.0)]),
        );
        let r = validate_verify(&v, &ctx).unwrap();
        assert!(r.selected);
        // Final answers come back in proposed order; the history is kept whole.
        assert_eq!(r.data["answers"], json!([a("n1", "yes", 250.0), a("n2", "no", 300.0)]));
        assert_eq!(r.data["answerHistory"].as_array().unwrap().len(), 3);
        assert_eq!(r.data["alternative"], "Border collie");
        assert_eq!(r.data["flags"]["drawing"], true);
    }

    #[test]
    fn invalid_pages_name_the_field() {
        let proposed = vec!["n1".to_string(), "n2".to_string()];
        let ctx = VerifyContext { image: 5, proposed: &proposed };
        let h = json!([a("n1", "yes", 100.0), a("n2", "no", 200.0)]);
        let cases = vec![
            (page(json!([a("n1", "yes", 100.0)]), h.clone()), "\"n2\" is not answered"),
            (page(json!([a("n1", "yes", 100.0), a("n1", "yes", 100.0)]), h.clone()), "answered twice"),
            (page(json!([a("n1", "no", 100.0), a("n2", "no", 200.0)]), h.clone()), "not the last answer"),
            (page(json!([a("n1", "yes", 100.0), a("n3", "no", 200.0)]), h.clone()), "answers[1].label"),
            (page(json!([a("n1", "sure", 100.0), a("n2", "no", 200.0)]), h.clone()), "answers[0].answer"),
            (page(json!([a("n1", "yes", 100.0), a("n2", "no", 200.0)]), json!([a("n1", "yes", 100.0)])), "no entry"),
            (page(json!([]), json!([a("n2", "no", 200.0), a("n1", "yes", 100.0)])), "time order"),
        ];
        for (v, what) in cases {
            let e = validate_verify(&v, &ctx).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let mut no_flag = page(json!([a("n1", "yes", 100.0), a("n2", "no", 200.0)]), h.clone());
        no_flag["flags"].as_object_mut().unwrap().remove("drawing");
        assert!(validate_verify(&no_flag, &ctx).unwrap_err().contains("flags.drawing"));
        let mut long = page(json!([a("n1", "yes", 100.0), a("n2", "no", 200.0)]), h);
        long["alternative"] = json!("x".repeat(MAX_ALTERNATIVE + 1));
        assert!(validate_verify(&long, &ctx).unwrap_err().contains("alternative"));
    }
}

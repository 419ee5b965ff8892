//! The Tag task (COCO style): validation of a submitted page.
//!
//! One image per page. The annotator finds a category through its
//! superclass tab (mouse or keyboard arrows) and drags the category's icon
//! onto an object; at most one icon per category per image; icons can be
//! moved and removed. A page submission:
//!
//! ```json
//! {"assignment": 7, "key": "…", "time_spent_ms": 9120,
//!  "imageID": 12, "originalSize": {"width": 640, "height": 480},
//!  "onPageSize": {"width": 800, "height": 600}, "imagePosition": {"x": 10, "y": 90},
//!  "timeSpent": 9120,
//!  "actionHistories": [
//!    {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.31, "y": 0.62}, "timeAt": 1630},
//!    {"actionType": "move", "iconType": "dog", "pointFrom": {"x": 0.31, "y": 0.62}, "pointTo": {"x": 0.35, "y": 0.6}, "timeAt": 2210},
//!    {"actionType": "remove", "iconType": "dog", "pointFrom": {"x": 0.35, "y": 0.6}, "timeAt": 3000}],
//!  "categoryHistories": [{"superclass": "animal", "timeAt": 900, "keyboard": false}],
//!  "mouseTracking": [{"x": 0.1, "y": 0.2, "timeAt": 120}]}
//! ```
//!
//! Field names follow the COCO-AB release (`actionType`, `iconType`,
//! `pointTo`, `timeAt`); points are normalised to the image. The server
//! replays `actionHistories`: an `add` of a category already on the image,
//! or a `move` / `remove` of one that is not, is refused, and a `pointFrom`
//! must be where the icon is. The stored record adds the final `icons`.

use serde_json::{json, Map, Value};

use crate::browse::ValidRecord;
use crate::fields::{array, boolean, in_order, number, obj, only_keys, unit_point, MAX_EVENTS, MAX_TIME};
use crate::manifest::Category;

/// What a Tag page must hold.
pub struct TagContext<'a> {
    /// The page's image id.
    pub image: i64,
    /// The icon categories of the HIT.
    pub categories: &'a [Category],
}

fn same(a: (f64, f64), b: (f64, f64)) -> bool {
    (a.0 - b.0).abs() <= 1e-6 && (a.1 - b.1).abs() <= 1e-6
}

/// Validates a Tag page submission; returns its one record (selected = at
/// least one icon is on the image at the end).
pub fn validate_tag(v: &Value, ctx: &TagContext<'_>) -> Result<ValidRecord, String> {
    let page =
        crate::fields::one_image(v, &["timeSpent", "actionHistories", "categoryHistories"], ctx.image, "timeAt")?;
    let (top, at, id) = (page.top, "submission", page.id);
    let time_spent = number(top, "timeSpent", at, 0.0, MAX_TIME)?;
    let mut icons: Vec<(String, (f64, f64))> = Vec::new();
    let mut actions = Vec::new();
    let mut last = 0.0;
    for (i, a) in array(top, "actionHistories", at, MAX_EVENTS)?.iter().enumerate() {
        let at = format!("actionHistories[{i}]");
        let a = obj(a, &at)?;
        only_keys(a, &["actionType", "iconType", "pointFrom", "pointTo", "timeAt"], &at)?;
        let kind = match a.get("actionType").and_then(Value::as_str) {
            Some(k @ ("add" | "move" | "remove")) => k,
            _ => return Err(format!("{at}.actionType: expected \"add\", \"move\" or \"remove\"")),
        };
        let icon = match a.get("iconType").and_then(Value::as_str) {
            Some(c) if ctx.categories.iter().any(|k| k.name == c) => c,
            Some(c) => return Err(format!("{at}.iconType: {c:?} is not an icon of this task")),
            None => return Err(format!("{at}.iconType: expected a category name")),
        };
        let t = number(a, "timeAt", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "timeAt")?;
        let from = if a.contains_key("pointFrom") { Some(unit_point(a, "pointFrom", &at)?) } else { None };
        let to = if a.contains_key("pointTo") { Some(unit_point(a, "pointTo", &at)?) } else { None };
        let slot = icons.iter().position(|(c, _)| c == icon);
        let mut rec = Map::new();
        rec.insert("actionType".into(), json!(kind));
        rec.insert("iconType".into(), json!(icon));
        match (kind, slot) {
            ("add", Some(_)) => {
                return Err(format!("{at}: a {icon:?} icon is already on the image; one icon per category per image"))
            }
            ("add", None) => {
                let to = to.ok_or_else(|| format!("{at}.pointTo: an add needs the point the icon was put on"))?;
                if from.is_some() {
                    return Err(format!("{at}.pointFrom: an add comes from the icon bar, not from a point"));
                }
                icons.push((icon.to_string(), to));
                rec.insert("pointTo".into(), json!({"x": to.0, "y": to.1}));
            }
            (_, None) => return Err(format!("{at}: there is no {icon:?} icon on the image to {kind}")),
            ("move", Some(k)) => {
                let to = to.ok_or_else(|| format!("{at}.pointTo: a move needs the point the icon was put on"))?;
                let here = icons[k].1;
                if let Some(f) = from.filter(|f| !same(*f, here)) {
                    return Err(format!(
                        "{at}.pointFrom: ({}, {}) is not where the {icon:?} icon is ({}, {})",
                        f.0, f.1, here.0, here.1
                    ));
                }
                icons[k].1 = to;
                rec.insert("pointFrom".into(), json!({"x": here.0, "y": here.1}));
                rec.insert("pointTo".into(), json!({"x": to.0, "y": to.1}));
            }
            (_, Some(k)) => {
                if to.is_some() {
                    return Err(format!("{at}.pointTo: a removal has no target point"));
                }
                let here = icons[k].1;
                if let Some(f) = from.filter(|f| !same(*f, here)) {
                    return Err(format!(
                        "{at}.pointFrom: ({}, {}) is not where the {icon:?} icon is ({}, {})",
                        f.0, f.1, here.0, here.1
                    ));
                }
                icons.remove(k);
                rec.insert("pointFrom".into(), json!({"x": here.0, "y": here.1}));
            }
        }
        rec.insert("timeAt".into(), json!(t));
        actions.push(Value::Object(rec));
    }
    let mut categories = Vec::new();
    let mut last = 0.0;
    for (i, c) in array(top, "categoryHistories", at, MAX_EVENTS)?.iter().enumerate() {
        let at = format!("categoryHistories[{i}]");
        let c = obj(c, &at)?;
        only_keys(c, &["superclass", "timeAt", "keyboard"], &at)?;
        let sup = match c.get("superclass").and_then(Value::as_str) {
            Some(s) if ctx.categories.iter().any(|k| k.superclass == s) => s,
            _ => return Err(format!("{at}.superclass: expected one of the task's superclasses")),
        };
        let t = number(c, "timeAt", &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, "timeAt")?;
        let keyboard = boolean(c, "keyboard", &at)?;
        categories.push(json!({"superclass": sup, "timeAt": t, "keyboard": keyboard}));
    }
    let final_icons: Vec<Value> = icons.iter().map(|(c, (x, y))| json!({"iconType": c, "x": x, "y": y})).collect();
    Ok(ValidRecord {
        image_id: id,
        selected: !icons.is_empty(),
        data: json!({
            "imageID": id,
            "originalSize": page.original,
            "onPageSize": page.on_page,
            "imagePosition": page.position,
            "timeSpent": time_spent,
            "actionHistories": actions,
            "categoryHistories": categories,
            "mouseTracking": page.trace,
            "icons": final_icons,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::coco_categories;

    fn page(actions: Value) -> Value {
        json!({"assignment": 1, "key": "k", "time_spent_ms": 4000, "imageID": 5,
               "originalSize": {"width": 640, "height": 480}, "onPageSize": {"width": 800, "height": 600},
               "imagePosition": {"x": 0, "y": 80}, "timeSpent": 4000,
               "actionHistories": actions,
               "categoryHistories": [{"superclass": "animal", "timeAt": 100, "keyboard": true}],
               "mouseTracking": [{"x": 0.2, "y": 0.3, "timeAt": 50}]})
    }

    #[test]
    fn replays_the_actions() {
        let cats = coco_categories();
        let ctx = TagContext { image: 5, categories: &cats };
        let v = page(json!([
            {"actionType": "add", "iconType": "dog", "pointTo": {"x": 0.3, "y": 0.6}, "timeAt": 200},
            {"actionType": "add", "iconType": "cat", "pointTo": {"x": 0.7, "y": 0.5}, "timeAt": 300},
            {"actionType": "move", "iconType": "dog", "pointFrom": {"x": 0.3, "y": 0.6}, "pointTo": {"x": 0.25, "y": 0.5}, "timeAt": 400},
            {"actionType": "remove", "iconType": "cat", "timeAt": 500},
            {"actionType": "add", "iconType": "cat", "pointTo": {"x": 0.9, "y": 0.1}, "timeAt": 600}
        ]));
        let r = validate_tag(&v, &ctx).unwrap();
        assert!(r.selected);
        assert_eq!(
            r.data["icons"],
            json!([{"iconType": "dog", "x": 0.25, "y": 0.5}, {"iconType": "cat", "x": 0.9, "y": 0.1}])
        );
        // The removal's pointFrom is filled in from the replay.
        assert_eq!(r.data["actionHistories"][3]["pointFrom"], json!({"x": 0.7, "y": 0.5}));
        let none = validate_tag(&page(json!([])), &ctx).unwrap();
        assert!(!none.selected);
    }

    #[test]
    fn refuses_impossible_histories() {
        let cats = coco_categories();
        let ctx = TagContext { image: 5, categories: &cats };
        let add =
            |c: &str, t: f64| json!({"actionType": "add", "iconType": c, "pointTo": {"x": 0.5, "y": 0.5}, "timeAt": t});
        let cases = vec![
            (json!([add("dog", 1.0), add("dog", 2.0)]), "already on the image"),
            (
                json!([{"actionType": "move", "iconType": "dog", "pointTo": {"x": 0.1, "y": 0.1}, "timeAt": 1}]),
                "no \"dog\" icon",
            ),
            (json!([{"actionType": "remove", "iconType": "dog", "timeAt": 1}]), "no \"dog\" icon"),
            (
                json!([add("dog", 1.0), {"actionType": "move", "iconType": "dog", "pointFrom": {"x": 0.1, "y": 0.1}, "pointTo": {"x": 0.2, "y": 0.2}, "timeAt": 2}]),
                "pointFrom",
            ),
            (json!([add("unicorn", 1.0)]), "not an icon of this task"),
            (json!([add("dog", 5.0), add("cat", 2.0)]), "time order"),
            (json!([{"actionType": "add", "iconType": "dog", "timeAt": 1}]), "pointTo"),
            (
                json!([{"actionType": "add", "iconType": "dog", "pointTo": {"x": 1.5, "y": 0.5}, "timeAt": 1}]),
                "pointTo.x",
            ),
            (json!([{"actionType": "drop", "iconType": "dog", "timeAt": 1}]), "actionType"),
        ];
        for (actions, what) in cases {
            let e = validate_tag(&page(actions), &ctx).unwrap_err();
            assert!(e.contains(what), "{what}: {e}");
        }
        let mut wrong_image = page(json!([]));
        wrong_image["imageID"] = json!(6);
        assert!(validate_tag(&wrong_image, &ctx).unwrap_err().contains("not the image of this page"));
        let mut bad_tab = page(json!([]));
        bad_tab["categoryHistories"][0]["superclass"] = json!("planets");
        assert!(validate_tag(&bad_tab, &ctx).unwrap_err().contains("categoryHistories[0].superclass"));
    }
}

//! Field checks shared by the task validators: every error names the field
//! (a JSON path such as `images[3].mouseTracking[7].x`) and what was
//! expected.

use serde_json::{json, Map, Value};

/// Latest accepted time, in milliseconds since the page was shown (a day).
pub const MAX_TIME: f64 = 86_400_000.0;
/// Largest accepted size or position in pixels.
pub const MAX_PIXELS: f64 = 100_000.0;
/// Most trace samples kept per image (16 ms sampling: over 5 minutes).
pub const MAX_TRACE: usize = 20_000;
/// Most clicks, hover events or actions per image.
pub const MAX_EVENTS: usize = 2_000;

/// `v` as an object.
pub fn obj<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{at}: expected an object"))
}

/// The object under `key`.
pub fn child<'a>(o: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a Map<String, Value>, String> {
    obj(o.get(key).unwrap_or(&Value::Null), &format!("{at}.{key}"))
}

/// A finite number from `lo` to `hi` under `key`.
pub fn number(o: &Map<String, Value>, key: &str, at: &str, lo: f64, hi: f64) -> Result<f64, String> {
    match o.get(key).and_then(Value::as_f64) {
        Some(x) if x.is_finite() && x >= lo && x <= hi => Ok(x),
        _ => Err(format!("{at}.{key}: expected a number from {lo} to {hi}")),
    }
}

/// A boolean under `key`.
pub fn boolean(o: &Map<String, Value>, key: &str, at: &str) -> Result<bool, String> {
    match o.get(key) {
        Some(Value::Bool(b)) => Ok(*b),
        _ => Err(format!("{at}.{key}: expected true or false")),
    }
}

/// A string of at most `max` bytes under `key`.
pub fn text<'a>(o: &'a Map<String, Value>, key: &str, at: &str, max: usize) -> Result<&'a str, String> {
    match o.get(key) {
        Some(Value::String(s)) if s.len() <= max => Ok(s),
        _ => Err(format!("{at}.{key}: expected a string of at most {max} bytes")),
    }
}

/// An array of at most `max` entries under `key`.
pub fn array<'a>(o: &'a Map<String, Value>, key: &str, at: &str, max: usize) -> Result<&'a [Value], String> {
    let list = o.get(key).and_then(Value::as_array).ok_or_else(|| format!("{at}.{key}: expected an array"))?;
    if list.len() > max {
        return Err(format!("{at}.{key}: {} entries; at most {max} are accepted", list.len()));
    }
    Ok(list)
}

/// Fails on a key not in `keys`.
pub fn only_keys(o: &Map<String, Value>, keys: &[&str], at: &str) -> Result<(), String> {
    match o.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("{at}.{k}: unknown field; expected {}", keys.join(", "))),
        None => Ok(()),
    }
}

/// `{"width", "height"}` in pixels under `key`.
pub fn size(o: &Map<String, Value>, key: &str, at: &str) -> Result<Value, String> {
    let at = format!("{at}.{key}");
    let s = obj(o.get(key).unwrap_or(&Value::Null), &at)?;
    only_keys(s, &["width", "height"], &at)?;
    let w = number(s, "width", &at, 1.0, MAX_PIXELS)?;
    let h = number(s, "height", &at, 1.0, MAX_PIXELS)?;
    Ok(json!({"width": w, "height": h}))
}

/// `{"x", "y"}` in pixels (may be negative: scrolled pages) under `key`.
pub fn position(o: &Map<String, Value>, key: &str, at: &str) -> Result<Value, String> {
    let at = format!("{at}.{key}");
    let p = obj(o.get(key).unwrap_or(&Value::Null), &at)?;
    only_keys(p, &["x", "y"], &at)?;
    let x = number(p, "x", &at, -MAX_PIXELS, MAX_PIXELS)?;
    let y = number(p, "y", &at, -MAX_PIXELS, MAX_PIXELS)?;
    Ok(json!({"x": x, "y": y}))
}

/// An image-normalised point `{"x", "y"}` (both in [0, 1]) under `key`.
pub fn unit_point(o: &Map<String, Value>, key: &str, at: &str) -> Result<(f64, f64), String> {
    let at = format!("{at}.{key}");
    let p = obj(o.get(key).unwrap_or(&Value::Null), &at)?;
    only_keys(p, &["x", "y"], &at)?;
    Ok((number(p, "x", &at, 0.0, 1.0)?, number(p, "y", &at, 0.0, 1.0)?))
}

/// Checks that `t` is not earlier than `*last`, then moves `*last` to it.
pub fn in_order(t: f64, last: &mut f64, at: &str, time_key: &str) -> Result<(), String> {
    if t < *last {
        return Err(format!("{at}.{time_key}: {t} is earlier than the entry before ({}); expected time order", *last));
    }
    *last = t;
    Ok(())
}

/// A time-ordered list of image-normalised points `{"x", "y", time_key}`
/// under `key`, at most `max`.
pub fn points(o: &Map<String, Value>, key: &str, at: &str, max: usize, time_key: &str) -> Result<Vec<Value>, String> {
    let list = array(o, key, at, max)?;
    let at = format!("{at}.{key}");
    let mut out = Vec::with_capacity(list.len());
    let mut last = 0.0;
    for (i, p) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let p = obj(p, &at)?;
        only_keys(p, &["x", "y", time_key], &at)?;
        let x = number(p, "x", &at, 0.0, 1.0)?;
        let y = number(p, "y", &at, 0.0, 1.0)?;
        let t = number(p, time_key, &at, 0.0, MAX_TIME)?;
        in_order(t, &mut last, &at, time_key)?;
        let mut m = Map::new();
        m.insert("x".into(), json!(x));
        m.insert("y".into(), json!(y));
        m.insert(time_key.into(), json!(t));
        out.push(Value::Object(m));
    }
    Ok(out)
}

/// The page-level fields every submission carries: `assignment`, `key`,
/// `time_spent_ms` and an optional `viewport`; checks that no other key
/// than those and `task_keys` is present.
pub fn submission<'a>(v: &'a Value, task_keys: &[&str]) -> Result<&'a Map<String, Value>, String> {
    let top = obj(v, "submission")?;
    let mut keys = vec!["assignment", "key", "time_spent_ms", "viewport"];
    keys.extend_from_slice(task_keys);
    only_keys(top, &keys, "submission")?;
    number(top, "time_spent_ms", "submission", 0.0, MAX_TIME)?;
    if let Some(vp) = top.get("viewport") {
        let vp = obj(vp, "viewport")?;
        only_keys(vp, &["width", "height"], "viewport")?;
        number(vp, "width", "viewport", 1.0, MAX_PIXELS)?;
        number(vp, "height", "viewport", 1.0, MAX_PIXELS)?;
    }
    Ok(top)
}

/// The `imageID` of a one-image page; it must be `expected`.
pub fn image_id(o: &Map<String, Value>, at: &str, expected: i64) -> Result<i64, String> {
    let id = o.get("imageID").and_then(Value::as_i64).ok_or_else(|| format!("{at}.imageID: expected an integer"))?;
    if id != expected {
        return Err(format!("{at}.imageID: {id} is not the image of this page ({expected})"));
    }
    Ok(id)
}

/// The page-level fields of a one-image page (tag, verify, region): the
/// submission object with `imageID`, `originalSize`, `onPageSize`,
/// `imagePosition` and `mouseTracking` besides `task_keys`, checked.
pub struct OneImage<'a> {
    /// The submission object.
    pub top: &'a Map<String, Value>,
    /// The page's image id.
    pub id: i64,
    /// `originalSize`.
    pub original: Value,
    /// `onPageSize`.
    pub on_page: Value,
    /// `imagePosition`.
    pub position: Value,
    /// `mouseTracking`, with times under `time_key`.
    pub trace: Vec<Value>,
}

/// Checks the common fields of a one-image page submission (see [`OneImage`]).
pub fn one_image<'a>(v: &'a Value, task_keys: &[&str], image: i64, time_key: &str) -> Result<OneImage<'a>, String> {
    let mut keys = vec!["imageID", "originalSize", "onPageSize", "imagePosition", "mouseTracking"];
    keys.extend_from_slice(task_keys);
    let top = submission(v, &keys)?;
    let at = "submission";
    Ok(OneImage {
        top,
        id: image_id(top, at, image)?,
        original: size(top, "originalSize", at)?,
        on_page: size(top, "onPageSize", at)?,
        position: position(top, "imagePosition", at)?,
        trace: points(top, "mouseTracking", at, MAX_TRACE, time_key)?,
    })
}

//! The long table as CSV.

use labelscope_core::ResultSet;

/// The CSV header line's fields.
pub const HEADER: [&str; 9] =
    ["model", "dataset", "metric", "subset", "correct", "total", "value", "ci_low", "ci_high"];

/// Renders `results` as CSV: the header
/// `model,dataset,metric,subset,correct,total,value,ci_low,ci_high` and one
/// line per row, in row order.
///
/// Missing values are empty cells; numbers are written with Rust's shortest
/// round-trip `Display` (full `f64` precision); fields containing a comma, a
/// double quote, a carriage return or a newline are quoted as in RFC 4180
/// (quotes doubled). Lines end with `\n`. Notes are not part of the CSV.
pub fn csv(results: &ResultSet) -> String {
    let mut out = HEADER.join(",");
    out.push('\n');
    for r in &results.rows {
        let opt_u = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let opt_f = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        let fields = [
            quote(&r.model),
            quote(&r.dataset),
            quote(&r.metric),
            quote(&r.subset),
            opt_u(r.correct),
            opt_u(r.total),
            r.value.to_string(),
            opt_f(r.ci_low),
            opt_f(r.ci_high),
        ];
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out
}

/// Quotes a field when RFC 4180 requires it.
pub(crate) fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(quote("two\nlines"), "\"two\nlines\"");
    }
}

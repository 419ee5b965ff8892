//! Rate scatter plots on linear, probit or logit axes (with error bars,
//! several coloured series and a least-squares line fitted in the
//! transformed coordinates), and histograms.
//!
//! The probit transform is the inverse of the standard normal CDF, computed
//! with P. J. Acklam's rational approximation (relative error below
//! 1.15·10⁻⁹ over `(0, 1)`); the logit is `ln(p / (1 − p))`. Rates of
//! exactly 0 or 1 have no finite probit or logit: they are clamped to
//! [`RATE_CLAMP`] and `1 − RATE_CLAMP` before the transform.

use std::fmt::Write as _;

use super::{
    check_finite, draw_frame, draw_grid, least_squares, ordered, place_labels, text_width, x_axis_label, y_axis_label,
    Axis, BoxF, Frame, Svg, PALETTE, TICK_FONT,
};
use crate::{Error, Result};

/// Rates closer than this to 0 or 1 are clamped before a probit or logit transform.
pub const RATE_CLAMP: f64 = 1e-4;

/// The scale of both axes of a rate scatter plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AxisScale {
    /// Rates as they are (drawn in percent).
    #[default]
    Linear,
    /// The inverse standard normal CDF of the rate.
    Probit,
    /// `ln(p / (1 − p))`.
    Logit,
}

impl AxisScale {
    /// `linear`, `probit` or `logit`.
    pub fn name(self) -> &'static str {
        match self {
            AxisScale::Linear => "linear",
            AxisScale::Probit => "probit",
            AxisScale::Logit => "logit",
        }
    }

    /// Parses a name written by [`AxisScale::name`].
    pub fn parse(s: &str) -> Option<AxisScale> {
        [AxisScale::Linear, AxisScale::Probit, AxisScale::Logit].into_iter().find(|a| a.name() == s)
    }

    /// The transformed coordinate of rate `p` (`p` in `[0, 1]`): `100·p` on
    /// a linear scale, else the probit or logit of `p` clamped to
    /// `[RATE_CLAMP, 1 − RATE_CLAMP]`.
    pub fn apply(self, p: f64) -> f64 {
        match self {
            AxisScale::Linear => 100.0 * p,
            AxisScale::Probit => inverse_normal_cdf(p.clamp(RATE_CLAMP, 1.0 - RATE_CLAMP)),
            AxisScale::Logit => logit(p.clamp(RATE_CLAMP, 1.0 - RATE_CLAMP)),
        }
    }
}

/// `ln(p / (1 − p))`; ±∞ at 0 and 1, NaN outside `[0, 1]`.
pub fn logit(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    (p / (1.0 - p)).ln()
}

/// The inverse of the standard normal CDF (the probit), by Acklam's
/// algorithm: a rational function of `p − ½` in the centre and of
/// `√(−2 ln p)` in the tails (`p < 0.02425` or `p > 0.97575`). Relative
/// error below 1.15·10⁻⁹. Returns −∞ at 0, +∞ at 1, NaN outside `[0, 1]`.
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e+01,
        2.209460984245205e+02,
        -2.759285104469687e+02,
        1.38357751867269e+02,
        -3.066479806614716e+01,
        2.506628277459239e+00,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e+01,
        1.615858368580409e+02,
        -1.556989798598866e+02,
        6.680131188771972e+01,
        -1.328068155288572e+01,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e+00,
        -2.549732539343734e+00,
        4.374664141464968e+00,
        2.938163982698783e+00,
    ];
    const D: [f64; 4] = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00];
    const P_LOW: f64 = 0.02425;
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < P_LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - P_LOW {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// One point of a [`RateScatterSpec`]: rates in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RatePoint {
    /// Text drawn next to the point.
    pub label: String,
    /// Index of the point's series in [`RateScatterSpec::series`].
    pub series: usize,
    /// Horizontal rate.
    pub x: f64,
    /// Vertical rate.
    pub y: f64,
    /// Interval of `x`, drawn as a horizontal error bar.
    pub x_ci: Option<(f64, f64)>,
    /// Interval of `y`, drawn as a vertical error bar.
    pub y_ci: Option<(f64, f64)>,
}

/// A scatter plot of rates (accuracies) on transformed axes.
#[derive(Debug, Clone, PartialEq)]
pub struct RateScatterSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Scale of both axes.
    pub scale: AxisScale,
    /// Series names (legend), coloured in order.
    pub series: Vec<String>,
    /// The points.
    pub points: Vec<RatePoint>,
    /// Fit `T(y) = a + b·T(x)` by least squares over the points of this
    /// series (in transformed coordinates `T`) and draw it.
    pub fit_series: Option<usize>,
    /// Draw the dashed line `y = x`.
    pub diagonal: bool,
}

/// Percentages ticked on probit and logit axes, most preferred first: a tick
/// of a later level is used only where the earlier ones leave a gap.
const TICK_LEVEL1: [f64; 9] = [1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0];
/// See [`TICK_LEVEL1`].
const TICK_LEVEL2: [f64; 10] = [0.1, 2.0, 20.0, 30.0, 40.0, 60.0, 70.0, 80.0, 98.0, 99.9];
/// See [`TICK_LEVEL1`].
const TICK_LEVEL3: [f64; 10] = [0.5, 15.0, 35.0, 45.0, 55.0, 65.0, 85.0, 97.0, 99.5, 99.8];
/// The last resort after [`TICK_LEVEL1`] and the next two levels: every
/// whole percent, and the far tails.
fn tick_level4() -> impl Iterator<Item = f64> {
    (1..100).map(f64::from).chain([0.01, 0.02, 0.05, 0.2, 99.95, 99.98, 99.99, 99.995])
}

/// Widens a probit or logit axis range `[lo, hi]` (transformed) to the
/// nearest tick value of the first three levels beyond each end, when that
/// adds at most 8% of the range on that side, so the axis starts and ends on
/// a round percentage; a linear range is returned as it is.
fn snap_range(scale: AxisScale, lo: f64, hi: f64) -> (f64, f64) {
    if scale == AxisScale::Linear {
        return (lo, hi);
    }
    let slack = 0.08 * (hi - lo);
    let nice = || TICK_LEVEL1.iter().chain(&TICK_LEVEL2).chain(&TICK_LEVEL3).map(|p| scale.apply(p / 100.0));
    let new_lo = nice().filter(|&t| t <= lo && t >= lo - slack).fold(lo, f64::min);
    let new_hi = nice().filter(|&t| t >= hi && t <= hi + slack).fold(hi, f64::max);
    (new_lo, new_hi)
}

/// Tick positions (transformed) and labels (percent) for a scaled axis covering `[lo, hi]` (transformed).
fn scaled_ticks(scale: AxisScale, lo: f64, hi: f64) -> Vec<(f64, String)> {
    if scale == AxisScale::Linear {
        let axis = Axis::exact(lo, hi, 6);
        return axis.ticks().into_iter().map(|t| (t, axis.label(t))).collect();
    }
    // Ticks at least 1/12 of the axis apart; whole percents only when the
    // round values give fewer than four ticks (a narrow range).
    let gap = (hi - lo) / 12.0;
    let mut chosen: Vec<(f64, f64)> = Vec::new();
    let add = |levels: &mut dyn Iterator<Item = f64>, chosen: &mut Vec<(f64, f64)>| {
        for pct in levels {
            let t = scale.apply(pct / 100.0);
            if t >= lo && t <= hi && chosen.iter().all(|&(u, _)| (u - t).abs() >= gap) {
                chosen.push((t, pct));
            }
        }
    };
    add(&mut TICK_LEVEL1.iter().chain(&TICK_LEVEL2).chain(&TICK_LEVEL3).copied(), &mut chosen);
    if chosen.len() < 4 {
        add(&mut tick_level4(), &mut chosen);
    }
    chosen.sort_by(|a, b| a.0.total_cmp(&b.0));
    chosen
        .into_iter()
        .map(|(t, pct)| {
            let label = if (pct - pct.round()).abs() < 1e-9 { format!("{pct:.0}") } else { format!("{pct}") };
            (t, label)
        })
        .collect()
}

/// Renders a [`RateScatterSpec`] as SVG: ticks are labelled in percent at
/// their transformed positions (on probit and logit axes round percentages,
/// the axis widened a little to end on one), each series has its own colour
/// (legend in the top-left corner), intervals are error bars, point labels
/// are placed as in the plain scatter plot (off other labels, points and
/// the legend; farther out with a leader line where a cluster leaves no
/// room), and the fitted line's legend gives `a`, `b` and R² in transformed
/// units.
///
/// Errors: [`Error::Empty`] without points, [`Error::Invalid`] for a rate
/// outside `[0, 1]` or a series index out of range, [`Error::NonFinite`]
/// for a NaN coordinate.
pub fn rate_scatter_svg(spec: &RateScatterSpec) -> Result<String> {
    if spec.points.is_empty() {
        return Err(Error::Empty(format!("scatter plot {:?} has no points", spec.title)));
    }
    let s = spec.scale;
    let mut tx = Vec::new();
    let mut ty = Vec::new();
    for p in &spec.points {
        for (what, v) in [("x", p.x), ("y", p.y)]
            .into_iter()
            .chain(p.x_ci.iter().flat_map(|c| [("x interval", c.0), ("x interval", c.1)]))
            .chain(p.y_ci.iter().flat_map(|c| [("y interval", c.0), ("y interval", c.1)]))
        {
            check_finite(&format!("{what} of point {:?}", p.label), v)?;
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Invalid(format!("{what} of point {:?} is {v}, not a rate in [0, 1]", p.label)));
            }
        }
        if p.series >= spec.series.len() {
            return Err(Error::Invalid(format!(
                "point {:?} is in series {} but there are {} series",
                p.label,
                p.series,
                spec.series.len()
            )));
        }
        tx.push(s.apply(p.x));
        ty.push(s.apply(p.y));
        if let Some((a, b)) = p.x_ci {
            tx.extend([s.apply(a), s.apply(b)]);
        }
        if let Some((a, b)) = p.y_ci {
            ty.extend([s.apply(a), s.apply(b)]);
        }
    }
    let range = |v: &[f64]| v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    let (mut x_lo, mut x_hi) = range(&tx);
    let (mut y_lo, mut y_hi) = range(&ty);
    if spec.diagonal {
        x_lo = x_lo.min(y_lo);
        y_lo = x_lo;
        x_hi = x_hi.max(y_hi);
        y_hi = x_hi;
    }
    let pad = |lo: f64, hi: f64| {
        let w = if hi - lo > 0.0 { hi - lo } else { 1.0 };
        (lo - 0.06 * w, hi + 0.06 * w)
    };
    let (x_lo, x_hi) = pad(x_lo, x_hi);
    let (y_lo, y_hi) = pad(y_lo, y_hi);
    let (x_lo, x_hi) = snap_range(s, x_lo, x_hi);
    let (y_lo, y_hi) = snap_range(s, y_lo, y_hi);
    let xt = scaled_ticks(s, x_lo, x_hi);
    let yt = scaled_ticks(s, y_lo, y_hi);
    let (width, height) = (760.0, 580.0);
    let y_tick_w = yt.iter().map(|(_, l)| text_width(l, TICK_FONT)).fold(0.0, f64::max);
    let left = super::left_margin(y_tick_w);
    let f = Frame {
        left,
        right: width - 24.0,
        top: 50.0,
        bottom: height - 62.0,
        x: Axis { min: x_lo, max: x_hi, step: 1.0 },
        y: Axis { min: y_lo, max: y_hi, step: 1.0 },
        y_down: false,
    };
    let mut svg = Svg::new(width, height);
    draw_grid(&mut svg, &f, &xt, &yt);
    draw_frame(&mut svg, &f, &xt, &yt);

    let mut legend: Vec<(String, String, bool)> = Vec::new();
    if spec.diagonal {
        let style = r##"stroke="#777777" stroke-width="1.5" stroke-dasharray="7 5""##;
        let lo = x_lo.max(y_lo);
        let hi = x_hi.min(y_hi);
        if lo < hi {
            svg.line(f.sx(lo), f.sy(lo), f.sx(hi), f.sy(hi), style);
        }
        legend.push((style.to_string(), "y = x".into(), false));
    }
    if let Some(fs) = spec.fit_series {
        let pts: Vec<(f64, f64)> =
            spec.points.iter().filter(|p| p.series == fs).map(|p| (s.apply(p.x), s.apply(p.y))).collect();
        if let Some((a, b, r2)) = least_squares(&pts) {
            let style = r##"stroke="#d62728" stroke-width="2""##;
            if let Some((p, q)) =
                super::clip_segment((x_lo, a + b * x_lo), (x_hi, a + b * x_hi), x_lo, x_hi, y_lo, y_hi)
            {
                svg.line(f.sx(p.0), f.sy(p.1), f.sx(q.0), f.sy(q.1), style);
            }
            let name = spec.series.get(fs).map(String::as_str).unwrap_or("");
            let sign = if b < 0.0 { '−' } else { '+' };
            legend.push((
                style.to_string(),
                format!(
                    "fit ({name}, {}): y = {} {sign} {}·x (R² = {r2:.3})",
                    s.name(),
                    super::fmt_sig(a, 4),
                    super::fmt_sig(b.abs(), 3)
                ),
                false,
            ));
        }
    }
    for (i, name) in spec.series.iter().enumerate() {
        if !spec.points.iter().any(|p| p.series == i) {
            continue;
        }
        let c = PALETTE[i % PALETTE.len()];
        legend.push((format!(r##"fill="{c}" stroke="#ffffff" stroke-width="1""##), name.clone(), true));
    }

    // Error bars, then points, then labels.
    for p in &spec.points {
        let c = PALETTE[p.series % PALETTE.len()];
        let bar = format!(r##"stroke="{c}" stroke-opacity="0.55" stroke-width="1.2""##);
        let (x, y) = (f.sx(s.apply(p.x)), f.sy(s.apply(p.y)));
        if let Some(ci) = p.x_ci {
            let (lo, hi) = ordered(ci);
            let (a, b) = (f.sx(s.apply(lo)), f.sx(s.apply(hi)));
            svg.line(a, y, b, y, &bar);
            svg.line(a, y - 3.0, a, y + 3.0, &bar);
            svg.line(b, y - 3.0, b, y + 3.0, &bar);
        }
        if let Some(ci) = p.y_ci {
            let (lo, hi) = ordered(ci);
            let (a, b) = (f.sy(s.apply(lo)), f.sy(s.apply(hi)));
            svg.line(x, a, x, b, &bar);
            svg.line(x - 3.0, a, x + 3.0, a, &bar);
            svg.line(x - 3.0, b, x + 3.0, b, &bar);
        }
    }
    let screen: Vec<(f64, f64)> = spec.points.iter().map(|p| (f.sx(s.apply(p.x)), f.sy(s.apply(p.y)))).collect();
    for (p, &(x, y)) in spec.points.iter().zip(&screen) {
        let c = PALETTE[p.series % PALETTE.len()];
        let title = format!("{}: x {:.2}%, y {:.2}%", p.label, 100.0 * p.x, 100.0 * p.y);
        svg.circle_titled(x, y, 4.5, &format!(r##"fill="{c}" stroke="#ffffff" stroke-width="1""##), &title);
    }
    // Legend box (top-left corner), drawn after the labels, which keep out of it and off the points.
    let row_h = 20.0;
    let text_w = legend.iter().map(|(_, t, _)| text_width(t, 12.0)).fold(0.0, f64::max);
    let (lx, ly) = (f.left + 10.0, f.top + 10.0);
    let lw = 10.0 + 30.0 + 8.0 + text_w + 10.0;
    let lh = 8.0 + row_h * legend.len() as f64;
    let mut obstacles: Vec<BoxF> =
        screen.iter().map(|&(x, y)| BoxF { x0: x - 5.0, y0: y - 5.0, x1: x + 5.0, y1: y + 5.0 }).collect();
    obstacles.push(BoxF { x0: lx, y0: ly, x1: lx + lw, y1: ly + lh });
    let plot_box = BoxF { x0: f.left + 2.0, y0: f.top + 2.0, x1: f.right - 2.0, y1: f.bottom - 2.0 };
    let labels: Vec<(&str, f64, f64)> =
        spec.points.iter().zip(&screen).map(|(p, &(x, y))| (p.label.as_str(), x, y)).collect();
    place_labels(&mut svg, &labels, &mut obstacles, &plot_box);
    // Legend.
    svg.rect(lx, ly, lw, lh, r##"fill="#ffffff" fill-opacity="0.9" stroke="#bbbbbb" stroke-width="1" rx="3""##);
    for (i, (style, text, dot)) in legend.iter().enumerate() {
        let cy = ly + 4.0 + row_h * (i as f64 + 0.5);
        if *dot {
            svg.circle(lx + 25.0, cy, 4.5, style);
        } else {
            svg.line(lx + 10.0, cy, lx + 40.0, cy, style);
        }
        svg.text(lx + 48.0, cy + 4.0, 12.0, "start", text, r##"fill="#222222""##);
    }
    svg.title(&spec.title);
    let unit = match s {
        AxisScale::Linear => " (%)".to_string(),
        other => format!(" (%, {} scale)", other.name()),
    };
    x_axis_label(&mut svg, &f, &format!("{}{unit}", spec.x_label), height - 18.0);
    y_axis_label(&mut svg, &f, &format!("{}{unit}", spec.y_label), f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

/// A histogram of values with equal-width bins.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSpec {
    /// Title above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// The values.
    pub values: Vec<f64>,
    /// Width of a bin (> 0); bins start at a multiple of it.
    pub bin_width: f64,
    /// A labelled vertical dashed line, such as a threshold.
    pub marker: Option<(String, f64)>,
}

/// Equal-width bins of `values`: `(lower edge, count)` for every bin from
/// the one holding the smallest value to the one holding the largest. Bin
/// `[k·w, (k+1)·w)` holds the values `v` with `floor(v / w) = k`.
///
/// Errors: [`Error::Empty`] without values, [`Error::NonFinite`] for a NaN
/// or infinite value, [`Error::Invalid`] for a bin width that is not
/// positive or more than 10,000 bins.
pub fn histogram_bins(values: &[f64], bin_width: f64) -> Result<Vec<(f64, usize)>> {
    if values.is_empty() {
        return Err(Error::Empty("histogram without values".into()));
    }
    if !(bin_width.is_finite() && bin_width > 0.0) {
        return Err(Error::Invalid(format!("histogram bin width {bin_width}: expected a positive number")));
    }
    for &v in values {
        check_finite("histogram value", v)?;
    }
    let k = |v: f64| (v / bin_width).floor() as i64;
    let lo = values.iter().map(|&v| k(v)).min().unwrap_or(0);
    let hi = values.iter().map(|&v| k(v)).max().unwrap_or(0);
    if hi - lo >= 10_000 {
        return Err(Error::Invalid(format!("histogram of {} bins: choose a wider bin", hi - lo + 1)));
    }
    let mut counts = vec![0usize; (hi - lo + 1) as usize];
    for &v in values {
        counts[(k(v) - lo) as usize] += 1;
    }
    Ok(counts.into_iter().enumerate().map(|(i, c)| ((lo + i as i64) as f64 * bin_width, c)).collect())
}

/// Renders a histogram as SVG (bars with a tooltip giving range and count).
/// Errors as [`histogram_bins`], and [`Error::NonFinite`] for a non-finite marker.
pub fn histogram_svg(spec: &HistogramSpec) -> Result<String> {
    let bins = histogram_bins(&spec.values, spec.bin_width)?;
    let x0 = bins.first().map(|b| b.0).unwrap_or(0.0);
    let mut x1 = bins.last().map(|b| b.0 + spec.bin_width).unwrap_or(1.0);
    let mut x_lo = x0;
    if let Some((_, m)) = &spec.marker {
        check_finite("histogram marker", *m)?;
        x_lo = x_lo.min(*m);
        x1 = x1.max(*m);
    }
    let max_count = bins.iter().map(|b| b.1).max().unwrap_or(1) as f64;
    let x_axis = Axis::covering(x_lo, x1, 8);
    let y_axis = Axis::covering(0.0, max_count * 1.05, 6);
    let (width, height) = (760.0, 460.0);
    let y_tick_w = super::tick_label_width(&y_axis);
    let left = super::left_margin(y_tick_w);
    let f = Frame { left, right: width - 24.0, top: 50.0, bottom: height - 62.0, x: x_axis, y: y_axis, y_down: false };
    let mut svg = Svg::new(width, height);
    super::draw_axes(&mut svg, &f, true);
    for &(lo, c) in &bins {
        if c == 0 {
            continue;
        }
        let (a, b) = (f.sx(lo), f.sx(lo + spec.bin_width));
        let (top, bottom) = (f.sy(c as f64), f.sy(0.0));
        let mut title = String::new();
        let short = |v: f64| (v * 1e9).round() / 1e9;
        let _ = write!(title, "[{}, {}): {c}", short(lo), short(lo + spec.bin_width));
        svg.rect_titled(
            a,
            top,
            (b - a).max(0.5),
            bottom - top,
            r##"fill="#1f77b4" fill-opacity="0.8" stroke="#ffffff" stroke-width="0.8""##,
            &title,
        );
    }
    if let Some((label, m)) = &spec.marker {
        let x = f.sx(*m);
        svg.line(x, f.top, x, f.bottom, r##"stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4""##);
        svg.text(x + 4.0, f.top + 14.0, 12.0, "start", label, r##"fill="#d62728""##);
    }
    svg.title(&spec.title);
    x_axis_label(&mut svg, &f, &spec.x_label, height - 18.0);
    y_axis_label(&mut svg, &f, &spec.y_label, f.left - 8.0 - y_tick_w - 12.0);
    Ok(svg.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1.0)
    }

    #[test]
    fn probit_matches_known_quantiles() {
        // Standard normal quantiles (tables / scipy.stats.norm.ppf).
        let known = [
            (0.5, 0.0),
            (0.75, 0.6744897501960817),
            (0.8413447460685429, 1.0),
            (0.9, 1.2815515655446004),
            (0.95, 1.6448536269514722),
            (0.975, 1.959963984540054),
            (0.995, 2.5758293035489004),
            (0.999, 3.090232306167813),
            (0.01, -2.3263478740408408),
            (0.025, -1.959963984540054),
            (1e-6, -4.753424308822899),
        ];
        for (p, z) in known {
            let got = inverse_normal_cdf(p);
            assert!(close(got, z, 3e-9), "probit({p}) = {got}, expected {z}");
        }
        // Symmetry and the limits.
        for p in [0.001, 0.02, 0.0243, 0.3, 0.49] {
            assert!(close(inverse_normal_cdf(p), -inverse_normal_cdf(1.0 - p), 1e-8), "{p}");
        }
        assert_eq!(inverse_normal_cdf(0.0), f64::NEG_INFINITY);
        assert_eq!(inverse_normal_cdf(1.0), f64::INFINITY);
        assert!(inverse_normal_cdf(1.5).is_nan() && inverse_normal_cdf(f64::NAN).is_nan());
    }

    #[test]
    fn logit_and_scales() {
        assert!(close(logit(0.75), 3f64.ln(), 1e-15));
        assert!(close(logit(0.1), -(9f64.ln()), 1e-15));
        assert_eq!(logit(0.5), 0.0);
        assert_eq!(AxisScale::Linear.apply(0.731), 73.1);
        // Clamping: 0 and 1 map to the transform of 1e-4 and 1 - 1e-4.
        assert!(close(AxisScale::Logit.apply(1.0), (9999f64).ln(), 1e-12));
        assert!(close(AxisScale::Probit.apply(0.0), -3.719016485455709, 3e-9));
        assert_eq!(AxisScale::parse("probit"), Some(AxisScale::Probit));
        assert_eq!(AxisScale::parse("log"), None);
    }

    #[test]
    fn probit_ticks_are_percentages_at_their_transformed_positions() {
        let t = scaled_ticks(AxisScale::Probit, inverse_normal_cdf(0.6), inverse_normal_cdf(0.97));
        let labels: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert!(labels.contains(&"75") && labels.contains(&"90") && labels.contains(&"95"), "{labels:?}");
        for (pos, l) in &t {
            let p: f64 = l.parse::<f64>().unwrap() / 100.0;
            assert!(close(*pos, inverse_normal_cdf(p), 1e-12));
        }
        assert!(t.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn probit_axis_ends_and_ticks_are_round() {
        let z = inverse_normal_cdf;
        // A range a little inside 60%..97% widens to those round values; one far from any
        // round value (more than 8% of the range away) keeps its end.
        let (lo, hi) = snap_range(AxisScale::Probit, z(0.602), z(0.969));
        assert!(close(lo, z(0.60), 1e-12) && close(hi, z(0.97), 1e-12), "{lo} {hi}");
        let (lo, hi) = snap_range(AxisScale::Probit, z(0.935), z(0.9455));
        assert!(close(lo, z(0.935), 1e-12) && close(hi, z(0.9455), 1e-12), "{lo} {hi}");
        assert_eq!(snap_range(AxisScale::Linear, 0.3, 0.7), (0.3, 0.7));
        // 60%..97%: the gap is (z(.97) - z(.6)) / 12 = 0.1357; 65% is 0.132 from 60% and
        // 67% only comes in for a narrow range, so the ticks are all round.
        let labels = |lo: f64, hi: f64| -> Vec<String> {
            scaled_ticks(AxisScale::Probit, z(lo), z(hi)).into_iter().map(|t| t.1).collect()
        };
        assert_eq!(labels(0.60, 0.97), ["60", "70", "75", "80", "85", "90", "95", "97"]);
        // 90%..92%: one round value only, so whole percents fill in.
        assert_eq!(labels(0.90, 0.92), ["90", "91", "92"]);
    }

    #[test]
    fn histogram_bins_by_hand() {
        // Width 10: 3 and 9.99 -> [0,10); 10 -> [10,20); 35 -> [30,40); nothing in [20,30).
        let b = histogram_bins(&[3.0, 9.99, 10.0, 35.0], 10.0).unwrap();
        assert_eq!(b, vec![(0.0, 2), (10.0, 1), (20.0, 0), (30.0, 1)]);
        assert!(histogram_bins(&[], 1.0).is_err());
        assert!(histogram_bins(&[1.0], 0.0).is_err());
        assert!(histogram_bins(&[f64::NAN], 1.0).is_err());
    }

    #[test]
    fn scatter_and_histogram_render() {
        let spec = RateScatterSpec {
            title: "val vs v2".into(),
            x_label: "ImageNet".into(),
            y_label: "ImageNetV2".into(),
            scale: AxisScale::Probit,
            series: vec!["models".into(), "humans".into()],
            points: vec![
                RatePoint { label: "a".into(), series: 0, x: 0.7, y: 0.6, x_ci: Some((0.65, 0.75)), y_ci: None },
                RatePoint { label: "b".into(), series: 0, x: 0.8, y: 0.72, x_ci: None, y_ci: Some((0.7, 0.74)) },
                RatePoint { label: "h".into(), series: 1, x: 0.95, y: 0.94, x_ci: None, y_ci: None },
            ],
            fit_series: Some(0),
            diagonal: true,
        };
        let svg = rate_scatter_svg(&spec).unwrap();
        assert!(svg.contains("fit (models, probit)") && svg.contains("#ff7f0e") && svg.contains("humans"));
        // The fit through two points is exact: slope (probit(.72)-probit(.6))/(probit(.8)-probit(.7)).
        let b =
            (inverse_normal_cdf(0.72) - inverse_normal_cdf(0.6)) / (inverse_normal_cdf(0.8) - inverse_normal_cdf(0.7));
        assert!(svg.contains(&format!("{}·x", super::super::fmt_sig(b, 3))), "{b}");
        assert!(svg.contains("R² = 1.000"));
        let png = crate::plot::svg_to_png(&svg, 1.0).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let mut bad = spec.clone();
        bad.points[0].x = 1.2;
        assert!(matches!(rate_scatter_svg(&bad), Err(Error::Invalid(_))));
        let h = HistogramSpec {
            title: "median time".into(),
            x_label: "seconds".into(),
            y_label: "images".into(),
            values: vec![5.0, 12.0, 14.0, 70.0],
            bin_width: 10.0,
            marker: Some(("60 s".into(), 60.0)),
        };
        let svg = histogram_svg(&h).unwrap();
        assert!(svg.contains("[10, 20): 2") && svg.contains("60 s"));
        assert_eq!(svg.matches("<rect").count(), 2 + 3, "background, frame, 3 bars, no empty bins: {svg}");
    }

    #[test]
    fn point_labels_of_a_cluster_do_not_overlap() {
        // Six labelled points within 0.4 percentage points of each other: placed blindly to the
        // right of their points, the labels would pile up on each other.
        let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
        let mut points: Vec<RatePoint> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let d = 0.0008 * i as f64;
                RatePoint { label: n.to_string(), series: 1, x: 0.95 + d, y: 0.94 + d, x_ci: None, y_ci: None }
            })
            .collect();
        points.push(RatePoint { label: "model".into(), series: 0, x: 0.7, y: 0.6, x_ci: None, y_ci: None });
        points.push(RatePoint { label: "model 2".into(), series: 0, x: 0.8, y: 0.7, x_ci: None, y_ci: None });
        let spec = RateScatterSpec {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            scale: AxisScale::Probit,
            series: vec!["models".into(), "humans".into()],
            points,
            fit_series: None,
            diagonal: false,
        };
        let svg = rate_scatter_svg(&spec).unwrap();
        // Each point label: <text x=".." y=".." font-size=".." text-anchor=".." ... paint-order="stroke">name</text>.
        let mut boxes: Vec<(String, f64, f64, f64, f64)> = Vec::new();
        for line in svg.lines().filter(|l| l.starts_with("<text") && l.contains("paint-order")) {
            let attr = |name: &str| -> String {
                let at = line.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                line[at..].split('"').next().unwrap().to_string()
            };
            let text = line[line.find('>').unwrap() + 1..line.rfind("</text>").unwrap()].to_string();
            let (x, y, size): (f64, f64, f64) =
                (attr("x").parse().unwrap(), attr("y").parse().unwrap(), attr("font-size").parse().unwrap());
            let w = text_width(&text, size);
            let x0 = match attr("text-anchor").as_str() {
                "start" => x,
                "end" => x - w,
                _ => x - w / 2.0,
            };
            boxes.push((text, x0, y - 0.8 * size, x0 + w, y + 0.25 * size));
        }
        assert_eq!(boxes.len(), 8, "{svg}");
        for (i, a) in boxes.iter().enumerate() {
            for b in &boxes[i + 1..] {
                let apart = a.3 <= b.1 || b.3 <= a.1 || a.4 <= b.2 || b.4 <= a.2;
                assert!(apart, "labels {:?} and {:?} overlap", a, b);
            }
        }
    }
}

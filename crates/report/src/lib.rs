//! # labelscope-report
//!
//! Turns a [`ResultSet`](labelscope_core::ResultSet) into things people read:
//!
//! * [`table::terminal`]: an aligned plain-ASCII pivot table for the terminal;
//! * [`csv::csv`]: the long table as RFC 4180 CSV (one line per result row);
//! * [`markdown::markdown`]: pivot tables in GitHub-flavoured Markdown;
//! * [`plot`]: hand-written SVG scatter plots (also of rates on probit or
//!   logit axes), grouped bars, histograms, heat maps and line plots, and PNG rendering of any SVG through `resvg`;
//! * [`html::html_report`]: one self-contained HTML file (inline CSS, SVG and
//!   a few lines of JavaScript, no external resources);
//! * [`html::html_page`]: a generic self-contained HTML page of sections with
//!   paragraphs, sortable tables (also writable as CSV) and figures, for
//!   results that are not a [`ResultSet`](labelscope_core::ResultSet).
//!
//! Rates (values in `[0, 1]`) are shown in percent with two decimals in the
//! human-readable outputs; count metrics (names ending in `errors`, or any
//! value outside `[0, 1]`) are shown as they are. The CSV keeps the raw
//! values at full precision.
#![warn(missing_docs)]

pub mod csv;
mod format;
pub mod html;
pub mod markdown;
pub mod plot;
pub mod table;

pub use crate::csv::csv;
pub use crate::format::escape_xml;
pub use crate::html::{html_page, html_report, Cell, Figure, Section, Table};
pub use crate::markdown::markdown;
pub use crate::plot::{
    bars_svg, buckets_from_results, heatmap_svg, histogram_svg, inverse_normal_cdf, least_squares, lines_svg,
    rate_scatter_svg, scatter_from_results, scatter_svg, svg_to_png, AxisScale, BarSeries, BarSpec, HeatmapSpec,
    HistogramSpec, LineSeries, LineSpec, Point, RatePoint, RateScatterSpec, ScatterSpec, Selector,
};
pub use crate::table::terminal;

/// Errors of the report crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is nothing to draw (no points, no categories, no values).
    #[error("nothing to plot: {0}")]
    Empty(String),
    /// A value that must be a finite number is NaN or infinite.
    #[error("non-finite value: {0}")]
    NonFinite(String),
    /// A `[DATASET:]METRIC[@SUBSET]` selector could not be parsed or does not
    /// pick out a unique dataset.
    #[error("bad selector {selector:?}: {reason}")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An input is inconsistent (lengths that do not match, a bad scale, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// An SVG could not be parsed.
    #[error("SVG could not be parsed: {0}")]
    Svg(String),
    /// Rendering or PNG encoding failed.
    #[error("PNG rendering failed: {0}")]
    Render(String),
}

/// Result type of the report crate.
pub type Result<T> = std::result::Result<T, Error>;

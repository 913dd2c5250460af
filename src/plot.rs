//! How index runs grow with a company's size, drawn as an SVG from `dossier bench index --json`
//! results at several sizes: both axes logarithmic, with a dashed line that grows in proportion
//! so that faster- or slower-than-linear growth shows at a glance.

use std::fmt::Write;

/// One size of company, measured by `dossier bench index`.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowthPoint {
    /// Customers the full run resolved.
    pub customers: f64,
    /// Records the full run wrote.
    pub records: f64,
    /// Wall seconds of the full run, of the run after 1% changed, and of the run with nothing changed.
    pub full_secs: f64,
    /// See `full_secs`.
    pub changed_secs: f64,
    /// See `full_secs`.
    pub unchanged_secs: f64,
    /// Peak resident memory of the full run, MiB.
    pub peak_mib: f64,
    /// The index on disk after the runs, MiB.
    pub index_mib: f64,
}

/// Errors reading a benchmark result.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A result lacks a figure the plot needs.
    #[error("not a `dossier bench index --json` result: {0} is missing")]
    Missing(&'static str),
    /// Fewer than two sizes: nothing grows.
    #[error("a growth plot needs results at two sizes or more, got {0}")]
    TooFew(usize),
}

impl GrowthPoint {
    /// Reads the figures of one `dossier bench index --json` result (with `--repeat`, the
    /// medians of its summary; the peak memory is the first full run's).
    pub fn from_json(v: &serde_json::Value) -> Result<GrowthPoint, PlotError> {
        let runs = v["runs"].as_array().ok_or(PlotError::Missing("runs"))?;
        let run = |label: &'static str| {
            runs.iter()
                .find(|r| r["label"] == label)
                .ok_or(PlotError::Missing("a run labelled full, no change or 1% changed"))
        };
        let (full, changed, unchanged) = (run("full")?, run("1% changed")?, run("no change")?);
        let num = |v: &serde_json::Value, what: &'static str| v.as_f64().ok_or(PlotError::Missing(what));
        let records = full["report"]["sources"]
            .as_array()
            .ok_or(PlotError::Missing("report.sources"))?
            .iter()
            .filter_map(|s| s["records"].as_f64())
            .sum();
        // A run kind's median when the result sums up repeats, else its one run's time.
        let secs = |run: &serde_json::Value| -> Result<f64, PlotError> {
            let median = v["summary"]["kinds"].as_array().and_then(|kinds| {
                kinds.iter().find(|k| k["label"] == run["label"]).and_then(|k| k["median_secs"].as_f64())
            });
            median.map_or_else(|| num(&run["wall_secs"], "wall_secs"), Ok)
        };
        Ok(GrowthPoint {
            customers: num(&full["report"]["customers"], "report.customers")?,
            records,
            full_secs: secs(full)?,
            changed_secs: secs(changed)?,
            unchanged_secs: secs(unchanged)?,
            peak_mib: num(&full["peak_rss_mib"], "peak_rss_mib")?,
            index_mib: num(&v["index_mib"], "index_mib")?,
        })
    }
}

/// One line of a panel.
struct Series<'a> {
    label: &'a str,
    color: &'a str,
    values: Vec<f64>,
}

/// The powers of ten that enclose `values` (all positive).
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (lo, hi) = values.filter(|v| *v > 0.0).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0, 1);
    }
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (a, b.max(a + 1))
}

/// The power of ten `10^d` as an axis label: 0.01, 1, 10k, 1M.
fn label(d: i32) -> String {
    match d {
        d if d >= 6 => format!("{}M", 10u64.pow((d - 6) as u32)),
        d if d >= 3 => format!("{}k", 10u64.pow((d - 3) as u32)),
        d if d >= 0 => format!("{}", 10u64.pow(d as u32)),
        d => format!("{:.*}", (-d) as usize, 10f64.powi(d)),
    }
}

/// Draws one panel at (`left`, `top`) of `w`×`h`: its frame, decade grid and labels, each
/// series as a line with dots, and a dashed line in proportion to size from the first series'
/// first point.
fn panel(svg: &mut String, (left, top, w, h): (f64, f64, f64, f64), title: &str, xs: &[f64], series: &[Series]) {
    let (x0, x1) = decades(xs.iter().copied());
    // The proportional line starts at the first series' first point and must fit too.
    let reference = match (xs.first(), xs.last(), series.first().and_then(|s| s.values.first())) {
        (Some(&a), Some(&b), Some(&y)) if a > 0.0 => Some((a, y, b, y * b / a)),
        _ => None,
    };
    let (y0, y1) =
        decades(series.iter().flat_map(|s| s.values.iter().copied()).chain(reference.map(|(_, _, _, end)| end)));
    let px = |x: f64| left + (x.max(1e-12).log10() - x0 as f64) / (x1 - x0) as f64 * w;
    let py = |y: f64| top + h - (y.max(1e-12).log10() - y0 as f64) / (y1 - y0) as f64 * h;
    let _ = writeln!(svg, r##"<text x="{:.0}" y="{:.0}" font-weight="bold">{title}</text>"##, left, top - 12.0);
    let _ = writeln!(
        svg,
        r##"<rect x="{left:.0}" y="{top:.0}" width="{w:.0}" height="{h:.0}" fill="none" stroke="#999"/>"##
    );
    for d in x0..=x1 {
        let x = px(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{top:.0}" x2="{x:.1}" y2="{:.0}" stroke="#e4e4e4"/><text x="{x:.1}" y="{:.0}" text-anchor="middle">{}</text>"##,
            top + h,
            top + h + 16.0,
            label(d)
        );
    }
    for d in y0..=y1 {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            svg,
            r##"<line x1="{left:.0}" y1="{y:.1}" x2="{:.0}" y2="{y:.1}" stroke="#e4e4e4"/><text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + w,
            left - 6.0,
            y + 4.0,
            label(d)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.0}" y="{:.0}" text-anchor="middle">customers</text>"##,
        left + w / 2.0,
        top + h + 34.0
    );
    if let Some((x, y, end, y_end)) = reference {
        let _ = writeln!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="5 4"/>"##,
            px(x),
            py(y),
            px(end),
            py(y_end)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> =
            xs.iter().zip(&s.values).map(|(&x, &y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
        let _ = writeln!(
            svg,
            r##"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"##,
            s.color,
            points.join(" ")
        );
        for (&x, &y) in xs.iter().zip(&s.values) {
            let _ = writeln!(svg, r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"##, px(x), py(y), s.color);
        }
        legend(
            svg,
            (left, top + 16.0 + 16.0 * i as f64),
            &format!(r##"stroke="{}" stroke-width="2""##, s.color),
            s.label,
        );
    }
    let ly = top + 16.0 + 16.0 * series.len() as f64;
    legend(svg, (left, ly), r##"stroke="#888" stroke-dasharray="5 4""##, "in proportion to size");
}

/// One legend line at the panel's `left` and baseline `y`: a stroke drawn with `style`, then `text`.
fn legend(svg: &mut String, (left, y): (f64, f64), style: &str, text: &str) {
    let _ = writeln!(
        svg,
        r##"<line x1="{:.0}" y1="{:.0}" x2="{:.0}" y2="{:.0}" {style}/><text x="{:.0}" y="{y:.0}">{text}</text>"##,
        left + 10.0,
        y - 4.0,
        left + 28.0,
        y - 4.0,
        left + 34.0,
    );
}

/// The growth plot of `points` (sorted by size here): run times on the left, memory and index
/// size on the right.
pub fn growth_svg(points: &[GrowthPoint]) -> Result<String, PlotError> {
    if points.len() < 2 {
        return Err(PlotError::TooFew(points.len()));
    }
    let mut points = points.to_vec();
    points.sort_by(|a, b| a.customers.total_cmp(&b.customers));
    let xs: Vec<f64> = points.iter().map(|p| p.customers).collect();
    let of = |f: fn(&GrowthPoint) -> f64| points.iter().map(f).collect::<Vec<f64>>();
    let mut svg = String::from(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="960" height="400" viewBox="0 0 960 400" font-family="sans-serif" font-size="12">
<rect width="960" height="400" fill="white"/>
"##,
    );
    panel(
        &mut svg,
        (70.0, 40.0, 380.0, 300.0),
        "Index runs, seconds",
        &xs,
        &[
            Series { label: "full run", color: "#1f77b4", values: of(|p| p.full_secs) },
            Series { label: "after 1% changed", color: "#ff7f0e", values: of(|p| p.changed_secs) },
            Series { label: "nothing changed", color: "#2ca02c", values: of(|p| p.unchanged_secs) },
        ],
    );
    panel(
        &mut svg,
        (560.0, 40.0, 380.0, 300.0),
        "Full run, MiB",
        &xs,
        &[
            Series { label: "peak memory", color: "#d62728", values: of(|p| p.peak_mib) },
            Series { label: "index on disk", color: "#9467bd", values: of(|p| p.index_mib) },
        ],
    );
    svg.push_str("</svg>\n");
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(customers: u64, full: f64, peak: f64) -> serde_json::Value {
        let run = |label: &str, secs: f64| {
            serde_json::json!({ "label": label, "wall_secs": secs, "peak_rss_mib": peak,
                "report": { "customers": customers, "sources": [{ "records": customers * 6 }] } })
        };
        serde_json::json!({ "runs": [run("full", full), run("no change", 0.3), run("1% changed", full / 8.0),
            run("1% deleted", full / 8.0)], "index_mib": customers as f64 / 100.0 })
    }

    #[test]
    fn a_result_reads_into_a_point_and_points_draw_two_panels() {
        let small = GrowthPoint::from_json(&result(1_000, 1.1, 106.0)).unwrap();
        assert_eq!((small.customers, small.records, small.full_secs, small.peak_mib), (1000.0, 6000.0, 1.1, 106.0));
        let big = GrowthPoint::from_json(&result(100_000, 250.0, 3794.0)).unwrap();
        let svg = growth_svg(&[big, small.clone()]).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 5, "three times, memory and index size");
        assert!(svg.contains(">100k<") && svg.contains(">1k<") && svg.contains("full run"));
        assert_eq!((label(-2), label(0), label(4), label(7)), ("0.01".into(), "1".into(), "10k".into(), "10M".into()));
        // Larger companies are drawn further right: the first polyline's x grow.
        let line = svg.lines().find(|l| l.starts_with("<polyline")).unwrap();
        let xs: Vec<f64> = line
            .split("points=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches("\"/>")
            .split(' ')
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        assert!(matches!(growth_svg(&[small]), Err(PlotError::TooFew(1))));
        assert!(matches!(GrowthPoint::from_json(&serde_json::json!({})), Err(PlotError::Missing(_))));
    }

    #[test]
    fn a_result_with_repeats_reads_the_medians_of_its_summary() {
        let mut v = result(10_000, 12.0, 500.0);
        v["summary"] = serde_json::json!({ "kinds": [
            { "label": "full", "runs": 3, "median_secs": 10.5, "min_secs": 9.0, "max_secs": 12.0 },
            { "label": "1% changed", "runs": 3, "median_secs": 0.9, "min_secs": 0.8, "max_secs": 1.5 },
        ] });
        let p = GrowthPoint::from_json(&v).unwrap();
        // "no change" has no summary entry here: its one run's time stands.
        assert_eq!((p.full_secs, p.changed_secs, p.unchanged_secs), (10.5, 0.9, 0.3));
    }
}

//! The charts (PNG, drawn with plotters) and a self-contained HTML report that embeds them. Each
//! chart has one panel per policy on shared axes, so the policies compare at a glance.

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::Context;
use base64::Engine as _;
use plotters::prelude::*;

use super::Run;
use super::workload::Workload;

/// Slices of the time axis each chart draws.
const BUCKETS: usize = 600;
const PANEL_HEIGHT: u32 = 220;
const WIDTH: u32 = 1000;

struct Series {
    label: String,
    color: RGBColor,
    values: Vec<Option<f64>>,
    /// Drawn as a line (a share, a gauge) rather than a filled area (a count).
    line: bool,
}

impl Series {
    fn area(label: &str, color: RGBColor, values: Vec<Option<f64>>) -> Self {
        Series { label: label.into(), color, values, line: false }
    }

    fn line(label: String, color: RGBColor, values: Vec<Option<f64>>) -> Self {
        Series { label, color, values, line: true }
    }
}

/// One chart: a title, and the series of each run.
struct Chart {
    file: &'static str,
    title: &'static str,
    unit: &'static str,
    panels: Vec<(String, Vec<Series>)>,
}

/// Writes one PNG per chart into `dir`; returns their paths.
pub fn charts(dir: &Path, runs: &[Run], workload: &Workload, until_ms: u64) -> anyhow::Result<Vec<PathBuf>> {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font travels with the binary, so charts render the same on any machine.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
    let mut demand =
        Chart { file: "demand.png", title: "Demand: tasks pending or running", unit: "tasks", panels: vec![] };
    let mut capacity =
        Chart { file: "capacity.png", title: "Capacity: workers by state", unit: "workers", panels: vec![] };
    let mut wait =
        Chart { file: "queue_wait.png", title: "Queue wait of tasks starting", unit: "seconds", panels: vec![] };
    for run in runs {
        let fleet = super::figures::resample(&run.recorder.curve, until_ms, BUCKETS);
        let column = |i: usize| fleet.iter().map(|v| Some(v[i])).collect::<Vec<_>>();
        let busy_and_idle: Vec<Option<f64>> = fleet.iter().map(|v| Some(v[2] + v[3])).collect();
        let busy_idle_starting: Vec<Option<f64>> = fleet.iter().map(|v| Some(v[1] + v[2] + v[3])).collect();
        demand.panels.push((run.label.clone(), vec![Series::area("demand", RGBColor(200, 80, 40), column(0))]));
        capacity.panels.push((
            run.label.clone(),
            vec![
                Series::area("starting", RGBColor(230, 180, 60), busy_idle_starting),
                Series::area("idle", RGBColor(120, 170, 220), busy_and_idle),
                Series::area("busy", RGBColor(30, 90, 170), column(2)),
            ],
        ));
        let waits = super::figures::wait_series(&run.recorder, workload, until_ms, BUCKETS);
        wait.panels.push((
            run.label.clone(),
            vec![Series::area(
                "mean wait",
                RGBColor(120, 60, 160),
                waits.iter().map(|w| w.map(|ms| ms / 1000.0)).collect(),
            )],
        ));
    }
    let mut charts = vec![demand, capacity, wait];
    charts.extend(role_charts(runs, until_ms));
    charts.iter().map(|c| draw(dir, c, until_ms)).collect()
}

/// For workloads whose workers report gauges, with two roles (prefill and decode): the split of the
/// groups between them beside the pressure on each, as the policy saw them at each decision.
fn role_charts(runs: &[Run], until_ms: u64) -> Vec<Chart> {
    let mut names: Vec<String> =
        runs.iter().flat_map(|r| r.recorder.roles.iter().flat_map(|p| p.roles.keys().cloned())).collect();
    names.sort();
    names.dedup();
    names.retain(|n| n != "{}");
    let [first, second] = names.as_slice() else { return vec![] };
    let mut split = Chart {
        file: "split.png",
        title: "Split: one role's share of the groups, and of the tasks (demand)",
        unit: "share",
        panels: vec![],
    };
    let mut pressure =
        Chart { file: "pressure.png", title: "Pressure: what the policy saw, per role", unit: "value", panels: vec![] };
    for run in runs {
        let points = &run.recorder.roles;
        let series = |f: &dyn Fn(&super::record::RolePoint) -> Option<f64>| bucketed(points, until_ms, f);
        let share = |a: f64, b: f64| (a + b > 0.0).then(|| a / (a + b));
        let view = |p: &super::record::RolePoint, role: &str| p.roles.get(role).cloned().unwrap_or_default();
        split.panels.push((
            run.label.clone(),
            vec![
                Series::line(
                    format!("{first} share of groups"),
                    RGBColor(30, 90, 170),
                    series(&|p| share(f64::from(view(p, first).groups), f64::from(view(p, second).groups))),
                ),
                Series::line(
                    format!("{first} share of tasks pending or running"),
                    RGBColor(200, 80, 40),
                    series(&|p| share(f64::from(view(p, first).outstanding), f64::from(view(p, second).outstanding))),
                ),
            ],
        ));
        let mut lines = Vec::new();
        let colors = [RGBColor(200, 80, 40), RGBColor(30, 90, 170), RGBColor(120, 60, 160), RGBColor(60, 150, 80)];
        let metrics: Vec<(String, String)> = [first, second]
            .into_iter()
            .flat_map(|role| {
                let mut m: Vec<String> = points
                    .iter()
                    .flat_map(|p| view(p, role).metrics.into_keys())
                    .filter(|m| m != "utilization")
                    .collect();
                m.sort();
                m.dedup();
                m.into_iter().map(move |m| (role.clone(), m))
            })
            .collect();
        for (i, (role, metric)) in metrics.iter().enumerate().take(colors.len()) {
            lines.push(Series::line(
                format!("{role} {metric}"),
                colors[i],
                series(&|p| view(p, role).metrics.get(metric).copied()),
            ));
        }
        pressure.panels.push((run.label.clone(), lines));
    }
    vec![split, pressure]
}

/// The mean of `f` over the points in each of [`BUCKETS`] slices of `[0, until_ms)`; `None` where none.
fn bucketed(
    points: &[super::record::RolePoint],
    until_ms: u64,
    f: &dyn Fn(&super::record::RolePoint) -> Option<f64>,
) -> Vec<Option<f64>> {
    let width = (until_ms as f64 / BUCKETS as f64).max(1.0);
    let mut sums = vec![(0.0, 0u32); BUCKETS];
    for p in points.iter().filter(|p| p.t_ms < until_ms) {
        if let Some(v) = f(p) {
            let b = ((p.t_ms as f64 / width) as usize).min(BUCKETS - 1);
            sums[b].0 += v;
            sums[b].1 += 1;
        }
    }
    sums.into_iter().map(|(sum, n)| (n > 0).then(|| sum / f64::from(n))).collect()
}

fn draw(dir: &Path, chart: &Chart, until_ms: u64) -> anyhow::Result<PathBuf> {
    let path = dir.join(chart.file);
    let height = 60 + PANEL_HEIGHT * chart.panels.len() as u32;
    let (hours, x_unit) = if until_ms >= 3 * 3_600_000 { (3_600_000.0, "hours") } else { (60_000.0, "minutes") };
    let x_max = until_ms as f64 / hours;
    let y_max = chart
        .panels
        .iter()
        .flat_map(|(_, series)| series.iter().flat_map(|s| s.values.iter().flatten().copied()))
        .fold(1.0f64, f64::max)
        * 1.1;
    {
        let root = BitMapBackend::new(&path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(50);
        title.titled(chart.title, ("sans-serif", 26))?;
        let panels = body.split_evenly((chart.panels.len(), 1));
        for (area, (label, series)) in panels.iter().zip(&chart.panels) {
            let mut c = ChartBuilder::on(area)
                .caption(label, ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            c.configure_mesh().x_desc(x_unit).y_desc(chart.unit).light_line_style(WHITE.mix(0.0)).draw()?;
            let step = x_max / BUCKETS as f64;
            for s in series {
                let points = s.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| ((i as f64 + 0.5) * step, v)));
                let drawn = if s.line {
                    // A path rather than plotters' LineSeries, which needs another crate feature.
                    c.draw_series(std::iter::once(PathElement::new(
                        points.collect::<Vec<_>>(),
                        s.color.stroke_width(2),
                    )))?
                } else {
                    c.draw_series(AreaSeries::new(points, 0.0, s.color.mix(0.6)).border_style(s.color))?
                };
                drawn
                    .label(s.label.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], s.color.filled()));
            }
            c.configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }
        root.present().with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// `report.html`: the figures table and every chart, embedded, so the file opens from disk anywhere.
pub fn html(dir: &Path, title: &str, rows: &[Vec<String>], charts: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let mut images = String::new();
    for chart in charts {
        let bytes = std::fs::read(chart)?;
        let name = chart.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        images.push_str(&format!(
            "<figure><img alt=\"{name}\" src=\"data:image/png;base64,{}\"><figcaption>{name}</figcaption></figure>\n",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ));
    }
    let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let cells = |tag: &str, row: &mut dyn Iterator<Item = &str>| -> String {
        row.map(|c| format!("<{tag}>{}</{tag}>", escape(c))).collect::<String>()
    };
    let mut table = format!("<tr>{}</tr>\n", cells("th", &mut super::COLUMNS.iter().copied()));
    for row in rows {
        table.push_str(&format!("<tr>{}</tr>\n", cells("td", &mut row.iter().map(String::as_str))));
    }
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>body{{font-family:sans-serif;max-width:1040px;margin:2em auto;color:#222}}table{{border-collapse:collapse;font-size:14px}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%;border:1px solid #ddd}}figure{{margin:1.5em 0}}</style></head>\n<body><h1>{t}</h1>\n<p>Times are queue waits (arrival to start) and time to capacity after each burst; worker-s is the integral of connected workers, cost prices it per adapter.</p>\n<table>\n{table}</table>\n{images}</body></html>\n",
        t = escape(title),
    );
    let path = dir.join("report.html");
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

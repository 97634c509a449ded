//! `ebbtide top ADMIN_ADDRESS`: the dashboard's live view in a terminal, for operators who only have
//! SSH. It polls `/status` and `/history` (with cursors, like the page) and redraws in place with
//! plain ANSI sequences: cursor home, each line cleared to its end, the rest of the screen cleared.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;

#[derive(Args)]
pub struct TopArgs {
    /// The scheduler's admin address (HOST:PORT), as given to `--admin`.
    admin: String,
    /// The scheduler's token, if it has one.
    #[arg(long, env = "EBBTIDE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    interval_ms: u64,
    /// Print one frame, without clearing the screen, and exit.
    #[arg(long)]
    once: bool,
}

/// Samples kept for the sparklines (the widest terminal line there is).
const KEEP_SAMPLES: usize = 300;
const KEEP_DECISIONS: usize = 100;
const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

pub fn run(args: TopArgs) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut view = View::default();
    loop {
        let frame = match view.refresh(&agent, &args) {
            Ok(()) => view.render(&args.admin, terminal_size()),
            Err(e) if e.is::<Unauthorized>() => return Err(e),
            Err(e) => format!(
                "ebbtide top  {}\n\ncannot reach the scheduler: {e:#}\nretrying every {} ms; Ctrl-C quits\n",
                args.admin, args.interval_ms
            ),
        };
        let mut out = std::io::stdout().lock();
        if args.once {
            out.write_all(frame.as_bytes())?;
            return Ok(());
        }
        // Home, every line cleared to its end, then everything below the frame cleared.
        let mut screen = String::from("\x1b[H");
        for line in frame.lines() {
            let _ = write!(screen, "{line}\x1b[K\r\n");
        }
        screen.push_str("\x1b[J");
        out.write_all(screen.as_bytes())?;
        out.flush()?;
        drop(out);
        std::thread::sleep(Duration::from_millis(args.interval_ms));
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0} refused the token (401): pass the scheduler's token with --token or EBBTIDE_TOKEN")]
struct Unauthorized(String);

#[derive(Default)]
struct View {
    status: Value,
    samples: VecDeque<Value>,
    decisions: VecDeque<Value>,
    swaps: Vec<Value>,
    samples_after: u64,
    decisions_after: u64,
}

impl View {
    fn refresh(&mut self, agent: &ureq::Agent, args: &TopArgs) -> anyhow::Result<()> {
        let get = |path: &str| -> anyhow::Result<Value> {
            let url = format!("http://{}{path}", args.admin);
            let mut request = agent.get(&url);
            if let Some(token) = &args.token {
                request = request.header("Authorization", &format!("Bearer {token}"));
            }
            let mut response = request.call().with_context(|| format!("GET {url}"))?;
            let code = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            match code {
                200 => serde_json::from_str(&text).with_context(|| format!("{url} answered something other than JSON")),
                401 => Err(Unauthorized(url).into()),
                _ => anyhow::bail!("{url} answered {code}: {}", text.trim()),
            }
        };
        let history =
            get(&format!("/history?samples_after={}&decisions_after={}", self.samples_after, self.decisions_after))?;
        self.status = get("/status")?;
        let last_seq = history["last_decision_seq"].as_u64().unwrap_or(0);
        if last_seq < self.decisions_after {
            *self = View { status: std::mem::take(&mut self.status), ..View::default() }; // a restarted scheduler
        }
        for s in history["samples"].as_array().into_iter().flatten() {
            self.samples_after = s["seq"].as_u64().unwrap_or(self.samples_after);
            self.samples.push_back(s.clone());
        }
        for d in history["decisions"].as_array().into_iter().flatten() {
            self.decisions.push_back(d.clone());
        }
        self.decisions_after = self.decisions_after.max(last_seq);
        while self.samples.len() > KEEP_SAMPLES {
            self.samples.pop_front();
        }
        while self.decisions.len() > KEEP_DECISIONS {
            self.decisions.pop_front();
        }
        self.swaps = history["swaps"].as_array().cloned().unwrap_or_default();
        Ok(())
    }

    fn render(&self, admin: &str, (width, height): (usize, usize)) -> String {
        let s = &self.status;
        let p = &s["policy"];
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&fit(&text, width));
            out.push('\n');
        };
        line(format!(
            "ebbtide top  {admin}  policy {} {} {} ({})  {}",
            str_of(&p["name"]),
            str_of(&p["version"]),
            str_of(&p["digest"]).chars().take(12).collect::<String>(),
            str_of(&p["source"]),
            clock(self.samples.back().and_then(|x| x["time_ms"].as_u64()).unwrap_or(0))
        ));
        let (rate, wait) = (self.completion_rate(), self.samples.back().and_then(|x| x["queue_wait_ms"].as_u64()));
        line(format!(
            "tasks    pending {}  running {}  done {}  failed {}  completed/s {rate:.1}  queue wait {}",
            s["tasks"]["pending"],
            s["tasks"]["running"],
            s["tasks"]["done"],
            s["tasks"]["failed"],
            wait.map_or("-".to_owned(), |w| format!("{:.1} s", w as f64 / 1000.0)),
        ));
        let g = &s["groups"];
        line(format!(
            "fleet    workers {}  groups starting {} running {} draining {}  decisions {} ({} failed)",
            s["workers"], g["starting"], g["running"], g["draining"], s["decisions"]["total"], s["decisions"]["failed"]
        ));
        for d in s["diagnostics"].as_array().into_iter().flatten() {
            line(format!("!! unrunnable: {}", str_of(d)));
        }
        if p["fallback_active"].as_bool() == Some(true) {
            line(format!("!! fallback deciding: {}", str_of(&p["fallback_reason"])));
        }
        if let Some(last) = self.swaps.last().filter(|w| w["accepted"].as_bool() == Some(false)) {
            line(format!(
                "!! last swap rejected at {}: {}",
                str_of(&last["rejection"]["stage"]),
                str_of(&last["rejection"]["error"])
            ));
        }
        line(String::new());
        let spark_width = width.saturating_sub(22).clamp(10, KEEP_SAMPLES);
        let series = |f: &dyn Fn(&Value) -> f64| -> Vec<f64> { self.samples.iter().map(f).collect() };
        let workers =
            series(&|x| x["fleet"].as_array().into_iter().flatten().map(|f| sum_states(&f["workers"])).sum::<f64>());
        let rates = self.rates();
        for (label, values) in [
            ("workers", workers),
            ("pending", series(&|x| x["pending"].as_f64().unwrap_or(0.0))),
            ("running", series(&|x| x["running"].as_f64().unwrap_or(0.0))),
            ("done/s", rates),
            ("wait s", series(&|x| x["queue_wait_ms"].as_f64().unwrap_or(0.0) / 1000.0)),
        ] {
            let max = values.iter().copied().fold(0.0, f64::max);
            line(format!("{label:<8} {} max {}", sparkline(&values, spark_width), short(max)));
        }
        line(String::new());
        line("adapter          groups (start/run/drain)  workers  per group  capabilities  priority".into());
        let latest = self.samples.back();
        for a in s["adapters"].as_array().into_iter().flatten() {
            let fleet = latest
                .and_then(|x| x["fleet"].as_array().and_then(|f| f.iter().find(|f| f["adapter"] == a["id"]).cloned()));
            let counts = fleet.as_ref().map_or("-".to_owned(), |f| {
                format!("{}/{}/{}", f["groups"]["starting"], f["groups"]["running"], f["groups"]["draining"])
            });
            let max = a["max_worker_groups"].as_u64().filter(|m| *m > 0).map_or("∞".to_owned(), |m| m.to_string());
            line(format!(
                "{:<16} {:>3} of {:<4} {:<12} {:>7}  {:>9}  {:<12}  {}",
                str_of(&a["id"]),
                a["groups"].to_string(),
                max,
                counts,
                fleet.as_ref().map_or(0.0, |f| sum_states(&f["workers"])),
                a["workers_per_group"].to_string(),
                a["capabilities"].as_str().unwrap_or("any"),
                a["priority"]
            ));
        }
        let shadow = &s["shadow"];
        let shadow = if shadow.is_object() {
            format!(
                "  shadow {}: {} equal, {} different",
                str_of(&shadow["name"]),
                shadow["equal"],
                shadow["different"]
            )
        } else {
            String::new()
        };
        line(format!("params {}  limits {}{shadow}", p["params"], p["limits"]));
        line(format!(
            "swaps {} accepted, {} rejected{}",
            s["swaps"]["accepted"],
            s["swaps"]["rejected"],
            self.swaps.last().map_or(String::new(), |w| format!(
                "; last {} {} {}",
                clock(w["at_ms"].as_u64().unwrap_or(0)),
                str_of(&w["source"]),
                if w["accepted"].as_bool() == Some(true) {
                    "installed".to_owned()
                } else {
                    format!("rejected at {}", str_of(&w["rejection"]["stage"]))
                }
            ))
        ));
        line(String::new());
        line("decision  time          trigger     took      starts           shutdowns  dropped  outcome".into());
        let used = out.lines().count();
        for d in self.decisions.iter().rev().take(height.saturating_sub(used + 1)) {
            out.push_str(&fit(&decision_row(d), width));
            out.push('\n');
        }
        out
    }

    fn rates(&self) -> Vec<f64> {
        let done = |x: &Value| x["done"].as_f64().unwrap_or(0.0) + x["failed"].as_f64().unwrap_or(0.0);
        let samples: Vec<&Value> = self.samples.iter().collect();
        samples
            .windows(2)
            .map(|w| {
                let dt = (w[1]["time_ms"].as_f64().unwrap_or(0.0) - w[0]["time_ms"].as_f64().unwrap_or(0.0)) / 1000.0;
                if dt > 0.0 { ((done(w[1]) - done(w[0])) / dt).max(0.0) } else { 0.0 }
            })
            .collect()
    }

    fn completion_rate(&self) -> f64 {
        self.rates().last().copied().unwrap_or(0.0)
    }
}

fn decision_row(d: &Value) -> String {
    let starts: Vec<String> = d["starts"].as_object().into_iter().flatten().map(|(a, n)| format!("{a}×{n}")).collect();
    let outcome = match d["error_kind"].as_str() {
        Some(kind) => format!("FAILED {kind}"),
        None => "ok".to_owned(),
    };
    let dropped = match d["dropped_total"].as_u64().unwrap_or(0) {
        0 => String::new(),
        n => format!("{n}: {}", str_of(&d["dropped"][0]["reason"])),
    };
    let us = d["duration_us"].as_u64().unwrap_or(0);
    let took = if us >= 1000 { format!("{:.1} ms", us as f64 / 1000.0) } else { format!("{us} µs") };
    format!(
        "{:>8}  {}  {:<10}  {:>8}  {:<15}  {:>9}  {:<7}  {outcome}",
        d["seq"].to_string(),
        clock_ms(d["time_ms"].as_u64().unwrap_or(0)),
        str_of(&d["trigger"]),
        took,
        starts.join(" "),
        d["shutdowns"].as_u64().unwrap_or(0),
        dropped,
    )
}

fn sum_states(counts: &Value) -> f64 {
    ["starting", "running", "draining"].iter().map(|k| counts[k].as_f64().unwrap_or(0.0)).sum()
}

fn sparkline(values: &[f64], width: usize) -> String {
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().fold(0.0, f64::max);
    let mut line: String = tail
        .iter()
        .map(|v| if max <= 0.0 { SPARKS[0] } else { SPARKS[((v / max) * 7.0).round().clamp(0.0, 7.0) as usize] })
        .collect();
    for _ in tail.len()..width {
        line.insert(0, ' ');
    }
    line
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().map_or_else(|| if v.is_null() { String::new() } else { v.to_string() }, str::to_owned)
}

/// `HH:MM:SS` (UTC) of a Unix time in milliseconds.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600 % 24, s / 60 % 60, s % 60)
}

fn clock_ms(ms: u64) -> String {
    format!("{}.{:03}", clock(ms), ms % 1000)
}

/// At most `width` characters of `text` (by character, so box-drawing and sparks count as one).
fn fit(text: &str, width: usize) -> String {
    text.chars().take(width).collect()
}

/// The terminal's (columns, rows), or 100 x 40 when stdout is not a terminal.
fn terminal_size() -> (usize, usize) {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass and nothing else.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 && size.ws_row > 0 { (size.ws_col as usize, size.ws_row as usize) } else { (100, 40) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_largest_value_and_pad_on_the_left() {
        assert_eq!(sparkline(&[0.0, 4.0, 8.0], 5), "  ▁▅█");
        assert_eq!(sparkline(&[0.0, 0.0], 2), "▁▁");
    }

    #[test]
    fn a_decision_row_shows_starts_and_the_failure_kind() {
        let d = serde_json::json!({"seq": 7, "time_ms": 3_600_000 + 61_005, "trigger": "pressure", "duration_us": 45,
            "starts": {"local": 2}, "shutdowns": 0, "dropped_total": 0, "dropped": [], "error_kind": "timeout"});
        let row = decision_row(&d);
        assert!(row.contains("01:01:01.005") && row.contains("local×2") && row.contains("FAILED timeout"), "{row}");
    }
}

//! `ebbtide demo`: `up` with an embedded configuration and a burst, shown live: the fleet grows in
//! one decision, drains the queue, and shrinks back to zero.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::config::FileConfig;
use super::scheduler::SchedulerArgs;
use super::up::bring_up;
use crate::client::{Submission, SubmitOptions};

const CONFIG: &str = r#"
[scheduler]
address = "tcp://127.0.0.1:0"
admin_address = "127.0.0.1:0"
# vanilla, not the default capability: the burst requires no capabilities, and vanilla's
# max_shutdowns_per_tick takes the fleet back to zero in one decision.
policy_content = "allocate=capability; scaling=vanilla"
tick_ms = 250

[scaling.params]
upper_task_ratio = 3
lower_task_ratio = 1
max_shutdowns_per_tick = 8
min_idle_ms = 500

[[adapter]]
type = "native"
id = "local"
max_worker_groups = 8
workers_per_group = 2
grace_ms = 2000
"#;

const TASKS: u64 = 128;
const TASK_MS: u64 = 500;
const MAX_GROUPS: usize = 8;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// After the summary, keep the scheduler and its dashboard running until Ctrl-C.
    #[arg(long)]
    stay: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let file = FileConfig::parse(CONFIG)?;
    let ready = SchedulerArgs::default().resolve(&file, None)?.load()?;
    super::runtime()?.block_on(async {
        let (launched, adapters) = bring_up(&file, ready, None).await?;
        if let Some(admin) = launched.admin {
            println!("watch it live: http://{admin}/ in a browser, or `ebbtide top {admin}` in a terminal");
        }
        let result = show(&launched).await;
        if result.is_ok() && args.stay {
            println!("still running (--stay): Ctrl-C stops");
            super::scheduler::stop_requested().await;
        }
        adapters.stop().await;
        result
    })
}

async fn show(launched: &super::scheduler::Launched) -> anyhow::Result<()> {
    let handle = &launched.handle;
    // Wait for the adapter to join.
    let joined = Instant::now();
    while handle.status().await.is_none_or(|(_, s)| s.adapters.is_empty()) {
        anyhow::ensure!(joined.elapsed() < Duration::from_secs(10), "the demo's adapter did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "burst: {TASKS} tasks of `sleep {TASK_MS}` ms; policy vanilla (upper_task_ratio 3); adapter \"local\": up to {MAX_GROUPS} groups x 2 workers"
    );
    let options = SubmitOptions {
        address: launched.address.clone(),
        function: "sleep".into(),
        payload: TASK_MS.to_string().into_bytes(),
        capabilities: Default::default(),
        count: TASKS,
        token: String::new(),
    };
    let burst = Instant::now();
    let submission = Submission::send(&options).await?;
    let results = tokio::spawn(submission.wait(|_| {}));

    let bar = ProgressBar::new(TASKS);
    bar.set_style(ProgressStyle::with_template("{bar:24.cyan/blue} {pos:>3}/{len} done | {msg}").expect("template"));
    let (mut first_start, mut full, mut drained, mut zero) = (None, None, None, None);
    let mut decisions = 0;
    while zero.is_none() {
        anyhow::ensure!(burst.elapsed() < Duration::from_secs(50), "the demo did not finish within 50 s");
        let Some((_, s)) = handle.status().await else { anyhow::bail!("the scheduler stopped") };
        let live = s.groups.starting + s.groups.running + s.groups.draining;
        let t = burst.elapsed();
        if first_start.is_none() && s.counters.starts > 0 {
            first_start = Some(t);
        }
        if full.is_none() && s.workers >= MAX_GROUPS * 2 {
            full = Some(t);
        }
        if drained.is_none() && s.tasks.done + s.tasks.failed >= TASKS {
            drained = Some(t);
        }
        if drained.is_some() && live == 0 {
            zero = Some(t);
        }
        decisions = s.counters.decisions;
        bar.set_position(s.tasks.done + s.tasks.failed);
        bar.set_message(format!(
            "pending {:>3} running {:>2} | groups starting {} running {} draining {} | decisions {}",
            s.tasks.pending, s.tasks.running, s.groups.starting, s.groups.running, s.groups.draining, decisions
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    let summary = results.await??;
    let ms = |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{} ms", d.as_millis()));
    println!("summary:");
    println!("  time to first start:    {}", ms(first_start));
    println!("  time to full capacity:  {} ({} workers connected)", ms(full), MAX_GROUPS * 2);
    println!(
        "  tasks done:             {} of {TASKS} ({} failed), p50 {:.0} ms, p99 {:.0} ms",
        summary.done, summary.failed, summary.p50_ms, summary.p99_ms
    );
    println!("  queue drained after:    {}", ms(drained));
    println!("  back to zero groups:    {}", ms(zero));
    println!("  decisions:              {decisions}");
    anyhow::ensure!(summary.done == TASKS, "{} of {TASKS} tasks did not complete", TASKS - summary.done);
    Ok(())
}

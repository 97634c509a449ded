//! The functions the bundled worker runs. Failures are results, never crashes.

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use crate::protocol::{Task, TaskResult, TaskStatus};
use crate::scheduler::metrics::{MAX_GAUGE_NAME_BYTES, MAX_GAUGES_PER_WORKER, gauge_name_ok};

pub const FUNCTIONS: &str = "sleep (payload: milliseconds, e.g. 500), spin (busy CPU, payload: milliseconds), echo \
(returns the payload), fail (fails with the payload as its message), gauge (payload: name=value; sets a gauge the \
worker's heartbeats report), exec (payload: a shell command; only with --allow-exec; its whole process group is \
killed when it ends or is cancelled)";

/// The `gauge` function: sets the gauge named in the payload (`name=value`). At most
/// [`MAX_GAUGES_PER_WORKER`] distinct gauges; a new one past that fails.
pub fn set_gauge(task: &Task, gauges: &mut BTreeMap<String, f64>) -> TaskResult {
    let text = String::from_utf8_lossy(&task.payload);
    let outcome = parse_gauge(&text).and_then(|(name, value)| {
        if !gauges.contains_key(&name) && gauges.len() >= MAX_GAUGES_PER_WORKER {
            return Err(format!("this worker already reports {MAX_GAUGES_PER_WORKER} gauges, the most it may"));
        }
        gauges.insert(name, value);
        Ok(())
    });
    match outcome {
        Ok(()) => TaskResult { id: task.id, status: TaskStatus::Done, output: Vec::new() },
        Err(e) => TaskResult { id: task.id, status: TaskStatus::Failed, output: e.into_bytes() },
    }
}

/// `kv_cache_utilization=0.8` → a gauge name and a finite value.
pub fn parse_gauge(text: &str) -> Result<(String, f64), String> {
    let example = "e.g. kv_cache_utilization=0.8";
    let Some((name, value)) = text.trim().split_once('=') else {
        return Err(format!("gauge {text:?}: expected name=value, {example}"));
    };
    let name = name.trim();
    if !gauge_name_ok(name) {
        return Err(format!(
            "gauge name {name:?}: expected 1 to {MAX_GAUGE_NAME_BYTES} letters, digits or _-.:/ characters, {example}"
        ));
    }
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((name.to_owned(), v)),
        _ => Err(format!("gauge {name}: the value must be a finite number, got {:?}, {example}", value.trim())),
    }
}

pub async fn run(task: &Task, allow_exec: bool) -> TaskResult {
    let (status, output) = match execute(task, allow_exec).await {
        Ok(output) => (TaskStatus::Done, output),
        Err(message) => (TaskStatus::Failed, message.into_bytes()),
    };
    TaskResult { id: task.id, status, output }
}

async fn execute(task: &Task, allow_exec: bool) -> Result<Vec<u8>, String> {
    match task.function.as_str() {
        "sleep" => {
            tokio::time::sleep(millis(task)?).await;
            Ok(Vec::new())
        }
        "spin" => {
            let duration = millis(task)?;
            // Busy in slices, yielding between them, so a cancel (which drops this future) stops it.
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < duration {
                let slice = Instant::now();
                while slice.elapsed() < Duration::from_millis(1) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                tokio::task::yield_now().await;
            }
            Ok(Vec::new())
        }
        "echo" => Ok(task.payload.clone()),
        "fail" => Err(if task.payload.is_empty() {
            "failed as asked".to_owned()
        } else {
            String::from_utf8_lossy(&task.payload).into_owned()
        }),
        "gauge" => Err("gauge runs on the worker's own state; this worker cannot set it here".to_owned()),
        "exec" if !allow_exec => Err("exec is disabled on this worker; start it with --allow-exec".to_owned()),
        "exec" => {
            let command = String::from_utf8_lossy(&task.payload).into_owned();
            // Its own process group, killed whole when the task ends or is cancelled, so nothing it
            // started (a pipeline, a background job) outlives it.
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run sh: {e}"))?;
            let _group = ProcessGroup(child.id().map(|pid| pid as i32));
            let output = child.wait_with_output().await.map_err(|e| format!("sh failed: {e}"))?;
            if output.status.success() {
                Ok(output.stdout)
            } else {
                Err(format!("{command:?} exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr)))
            }
        }
        other => Err(format!("unknown function {other:?}; this worker runs {FUNCTIONS}")),
    }
}

fn millis(task: &Task) -> Result<Duration, String> {
    let text = String::from_utf8_lossy(&task.payload);
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| format!("{} expects a number of milliseconds as its payload, got {:?}", task.function, text))
}

/// Kills a process group when dropped.
struct ProcessGroup(Option<i32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The group may be gone already; nothing to do then.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        }
    }
}

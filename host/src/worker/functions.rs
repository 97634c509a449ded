//! The functions the bundled worker runs. Failures are results, never crashes.

use std::time::{Duration, Instant};

use crate::protocol::{Task, TaskResult, TaskStatus};

pub const FUNCTIONS: &str = "sleep (payload: milliseconds), spin (busy CPU, payload: milliseconds), echo (returns \
the payload), fail (fails with the payload as its message), exec (payload: a shell command; only with --allow-exec)";

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
            tokio::task::spawn_blocking(move || {
                let start = Instant::now();
                let mut x = 0u64;
                while start.elapsed() < duration {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
            .await
            .map_err(|e| format!("spin failed: {e}"))?;
            Ok(Vec::new())
        }
        "echo" => Ok(task.payload.clone()),
        "fail" => Err(if task.payload.is_empty() {
            "failed as asked".to_owned()
        } else {
            String::from_utf8_lossy(&task.payload).into_owned()
        }),
        "exec" if !allow_exec => Err("exec is disabled on this worker; start it with --allow-exec".to_owned()),
        "exec" => {
            let command = String::from_utf8_lossy(&task.payload).into_owned();
            let output = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output()
                .await
                .map_err(|e| format!("cannot run sh: {e}"))?;
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

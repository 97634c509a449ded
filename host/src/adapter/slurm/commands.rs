//! The Slurm commands the adapter runs (`sbatch`, `squeue`, `scancel`), each under a timeout, and
//! what their output means.
//!
//! Every command is counted and logged at debug level (`slurm command`), so the cost of a decision
//! or of a liveness interval can be read off the log. A failure carries Slurm's own message.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The tools the adapter needs on PATH.
pub const TOOLS: [&str; 3] = ["sbatch", "squeue", "scancel"];

/// Job states after which a job runs nothing any more (squeue's `%T`).
const ENDED: [&str; 11] = [
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "REVOKED",
    "SPECIAL_EXIT",
    "TIMEOUT",
];

/// One line of `squeue -o '%i|%j|%T|%r'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub state: String,
    pub reason: String,
}

impl JobRow {
    pub fn ended(&self) -> bool {
        ENDED.contains(&self.state.as_str())
    }

    pub fn running(&self) -> bool {
        self.state == "RUNNING"
    }

    /// `TIMEOUT (TimeLimit)`, `CANCELLED`: Slurm's words for how the job ended.
    pub fn outcome(&self) -> String {
        match self.reason.as_str() {
            "" | "None" => self.state.clone(),
            reason => format!("{} ({reason})", self.state),
        }
    }
}

/// Runs Slurm's commands; shared by the adapter's tasks.
pub struct Slurm {
    timeout: Duration,
    issued: AtomicU64,
}

impl Slurm {
    /// Fails, naming the tool, when one of [`TOOLS`] is not on PATH.
    pub fn locate(timeout: Duration) -> anyhow::Result<Slurm> {
        for tool in TOOLS {
            if find_on_path(tool).is_none() {
                anyhow::bail!(
                    "`{tool}` is not on PATH; the Slurm adapter needs Slurm's client commands ({}), e.g. \
                     `apt-get install slurm-client` on Debian",
                    TOOLS.join(", ")
                );
            }
        }
        Ok(Slurm { timeout, issued: AtomicU64::new(0) })
    }

    /// How many commands have been run so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// Submits a batch job; its id, or sbatch's message.
    pub async fn submit(&self, args: &[String], script: &str, token: &str) -> Result<String, String> {
        let out = self.run("sbatch", args, Some(script), &[("EBBTIDE_TOKEN", token)]).await?;
        // --parsable prints `id` or `id;cluster`.
        let id = out.trim().split(';').next().unwrap_or_default();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("sbatch printed no job id: {:?}", out.trim()));
        }
        Ok(id.to_owned())
    }

    /// Every job of this user that squeue still lists, running or ended (ended jobs stay for
    /// `MinJobAge`, 300 s by default): one query for all jobs.
    pub async fn jobs(&self) -> Result<Vec<JobRow>, String> {
        let args = ["--me", "--noheader", "--states=all", "--format=%i|%j|%T|%r"].map(String::from);
        let out = self.run("squeue", &args, None, &[]).await?;
        Ok(out.lines().filter_map(parse_row).collect())
    }

    /// Sends `signal` to every step of the jobs (the workers), leaving the jobs to end by themselves.
    pub async fn signal(&self, ids: &[String], signal: &str) -> Result<(), String> {
        let mut args = vec![format!("--signal={signal}")];
        args.extend(ids.iter().cloned());
        self.run("scancel", &args, None, &[]).await.map(drop)
    }

    /// Cancels the jobs (Slurm sends SIGTERM, then SIGKILL after its `KillWait`).
    pub async fn cancel(&self, ids: &[String]) -> Result<(), String> {
        self.run("scancel", ids, None, &[]).await.map(drop)
    }

    async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<String, String> {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(n, "slurm command: {program} {}", args.join(" "));
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| format!("cannot run {program}: {e}"))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).await.map_err(|e| format!("cannot write {program}'s input: {e}"))?;
        }
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                format!("{program} did not finish within {} ms (command_timeout_ms)", self.timeout.as_millis())
            })?
            .map_err(|e| format!("{program} failed: {e}"))?;
        if !output.status.success() {
            return Err(slurm_message(program, &String::from_utf8_lossy(&output.stderr), output.status));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// `sbatch: error: Batch job submission failed: Invalid feature specification` becomes
/// `sbatch: Batch job submission failed: Invalid feature specification`.
fn slurm_message(program: &str, stderr: &str, status: std::process::ExitStatus) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(|l| l.trim().trim_start_matches(&format!("{program}: ")).trim_start_matches("error: ").trim())
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        format!("{program} failed ({status}) without a message")
    } else {
        format!("{program}: {}", lines.join("; "))
    }
}

fn parse_row(line: &str) -> Option<JobRow> {
    // The name is the only field that may itself hold a `|`.
    let (id, rest) = line.trim().split_once('|')?;
    let mut tail = rest.rsplitn(3, '|');
    let reason = tail.next()?;
    let state = tail.next()?;
    let name = tail.next()?;
    Some(JobRow { id: id.to_owned(), name: name.to_owned(), state: state.to_owned(), reason: reason.to_owned() })
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_states_and_reasons() {
        let row = parse_row("42|ebbtide-s-3|TIMEOUT|TimeLimit").unwrap();
        assert!(row.ended() && !row.running());
        assert_eq!(row.outcome(), "TIMEOUT (TimeLimit)");
        let row = parse_row("7|odd|name|RUNNING|None").unwrap();
        assert_eq!((row.name.as_str(), row.running(), row.outcome().as_str()), ("odd|name", true, "RUNNING"));
        assert!(!parse_row("9|x|PENDING|Resources").unwrap().ended());
        assert_eq!(parse_row("garbage"), None);
    }

    #[test]
    fn slurm_messages_lose_only_the_prefixes() {
        use std::os::unix::process::ExitStatusExt;
        let m = slurm_message(
            "sbatch",
            "sbatch: error: Batch job submission failed: Invalid feature specification\n",
            std::process::ExitStatus::from_raw(256),
        );
        assert_eq!(m, "sbatch: Batch job submission failed: Invalid feature specification");
    }
}

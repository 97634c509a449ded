//! `pid_file`: the scheduler's process id in a file, so that `kill -HUP $(cat ebbtide.pid)` reloads
//! the scheduler alone (a `pidof` or `pkill` would also reach the workers it started).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The written file; removed when dropped, if it still holds this process's id.
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's id to `path` (atomically, through a rename). Refuses a file that names
    /// another running process: two schedulers must not share one.
    pub fn write(path: &Path) -> anyhow::Result<PidFile> {
        if let Some(other) = holder(path)
            && other != std::process::id()
            && Path::new(&format!("/proc/{other}")).exists()
        {
            bail!(
                "pid_file {}: process {other} is running and holds it; stop it, or choose another pid_file",
                path.display()
            );
        }
        let temporary = path.with_extension("pid.tmp");
        std::fs::write(&temporary, format!("{}\n", std::process::id()))
            .and_then(|_| std::fs::rename(&temporary, path))
            .with_context(|| format!("pid_file {}: cannot write it", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if holder(&self.0) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// The process id a pid file names, if it names one.
fn holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

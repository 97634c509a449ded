//! Naming a policy: a built-in by name, or a `.wasm` file by path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::PolicyError;
use super::builtin::{self, Builtin};
use super::component::LoadedPolicy;
use super::limits::CallLimits;

/// Where a policy's component comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicySource {
    Builtin(&'static str),
    File(PathBuf),
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicySource::Builtin(name) => write!(f, "builtin:{name}"),
            PolicySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unknown policy {0:?}: expected a built-in ({names}) or a path to a .wasm file", names = builtin::names())]
    Unknown(String),
    #[error("cannot read policy file {path}: {error}; expected a built-in ({names}) or a readable .wasm file", names = builtin::names())]
    Unreadable { path: PathBuf, error: std::io::Error },
    #[error("policy file {path}: {why}")]
    Refused { path: PathBuf, why: String },
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// What a swap may read: files up to `max_bytes` (`max_policy_bytes`), and, when `dirs` is not
/// empty, only inside those folders (`policy_dirs`).
#[derive(Clone, Debug)]
pub struct ReadRules {
    pub max_bytes: usize,
    pub dirs: Vec<PathBuf>,
}

impl Default for ReadRules {
    fn default() -> Self {
        ReadRules { max_bytes: crate::scheduler::Limits::default().max_policy_bytes, dirs: Vec::new() }
    }
}

impl ReadRules {
    /// Reads a policy file: a regular file (never a FIFO, device or directory, which could block or
    /// never end), inside the allowed folders, and no larger than the cap.
    pub fn read(&self, path: &Path) -> Result<Vec<u8>, SourceError> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let refused = |why: String| SourceError::Refused { path: path.to_path_buf(), why };
        let unreadable = |error| SourceError::Unreadable { path: path.to_path_buf(), error };
        if !self.dirs.is_empty() {
            let real = path.canonicalize().map_err(unreadable)?;
            let inside = self.dirs.iter().any(|d| d.canonicalize().is_ok_and(|d| real.starts_with(d)));
            if !inside {
                let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
                return Err(refused(format!("outside the allowed folders (policy_dirs: {})", dirs.join(", "))));
            }
        }
        // Non-blocking, so opening a FIFO with no writer returns at once instead of waiting for one.
        let file =
            std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(unreadable)?;
        let meta = file.metadata().map_err(unreadable)?;
        if !meta.is_file() {
            return Err(refused("not a regular file; expected a .wasm component".into()));
        }
        if meta.len() > self.max_bytes as u64 {
            return Err(refused(format!(
                "{} bytes, over the limit of {} bytes (max_policy_bytes)",
                meta.len(),
                self.max_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // The file may grow while it is read: never read more than the cap.
        file.take(self.max_bytes as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
        if bytes.len() > self.max_bytes {
            return Err(refused(format!("over the limit of {} bytes (max_policy_bytes)", self.max_bytes)));
        }
        Ok(bytes)
    }
}

impl PolicySource {
    /// A built-in name, or anything that looks like a path (has a `.wasm` ending or a separator, or
    /// exists). Relative paths are taken relative to `base` when given.
    pub fn parse(spec: &str, base: Option<&Path>) -> Result<PolicySource, SourceError> {
        if let Some(b) = builtin::find(spec) {
            return Ok(PolicySource::Builtin(b.name));
        }
        let path = Path::new(spec);
        let looks_like_path = spec.ends_with(".wasm") || spec.contains(std::path::MAIN_SEPARATOR) || path.exists();
        if !looks_like_path {
            return Err(SourceError::Unknown(spec.to_owned()));
        }
        let path = match base {
            Some(base) if path.is_relative() => base.join(path),
            _ => path.to_path_buf(),
        };
        // Absolute, so that logs name it unambiguously and a watch survives a change of directory.
        let path = std::path::absolute(&path).unwrap_or(path);
        Ok(PolicySource::File(path))
    }

    pub fn builtin(&self) -> Option<Builtin> {
        match self {
            PolicySource::Builtin(name) => builtin::find(name),
            PolicySource::File(_) => None,
        }
    }

    /// The component's bytes, read under the default [`ReadRules`].
    pub fn read(&self) -> Result<Vec<u8>, SourceError> {
        self.read_with(&ReadRules::default())
    }

    /// The component's bytes; a file is read under `rules`.
    pub fn read_with(&self, rules: &ReadRules) -> Result<Vec<u8>, SourceError> {
        match self {
            PolicySource::Builtin(name) => Ok(builtin::find(name).map(|b| b.component.to_vec()).unwrap_or_default()),
            PolicySource::File(path) => rules.read(path),
        }
    }

    /// Reads and loads the policy (compiling it: call off any async runtime).
    pub fn load(&self, limits: CallLimits) -> Result<Arc<LoadedPolicy>, SourceError> {
        Ok(Arc::new(LoadedPolicy::load(&self.read()?, limits)?))
    }
}

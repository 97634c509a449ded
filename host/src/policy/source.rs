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
    #[error(transparent)]
    Policy(#[from] PolicyError),
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

    /// The component's bytes.
    pub fn read(&self) -> Result<Vec<u8>, SourceError> {
        match self {
            PolicySource::Builtin(name) => Ok(builtin::find(name).map(|b| b.component.to_vec()).unwrap_or_default()),
            PolicySource::File(path) => {
                std::fs::read(path).map_err(|error| SourceError::Unreadable { path: path.clone(), error })
            }
        }
    }

    /// Reads and loads the policy (compiling it: call off any async runtime).
    pub fn load(&self, limits: CallLimits) -> Result<Arc<LoadedPolicy>, SourceError> {
        Ok(Arc::new(LoadedPolicy::load(&self.read()?, limits)?))
    }
}

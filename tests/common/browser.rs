//! Headless Chromium for the page tests (Debian's `chromium`), started as these machines need it: no
//! sandbox, no GPU, and none of the background connections a closed network refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The browser, or `None` after a visible SKIPPED line; under `CI=true` a missing browser fails the
/// test, naming it (see [`super::tool_missing`]).
pub fn chromium(what_for: &str) -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| which(b));
    if found.is_none() {
        super::tool_missing("chromium (Debian package chromium; .ci/run installs it)", what_for);
    }
    found
}

/// Loads `url` for `virtual_ms` of virtual time in a `width`x`height` window, with its own profile
/// folder under `dir`, and returns the DOM it ended with (and what the browser said on stderr).
pub fn dump_dom(
    chromium: &Path,
    dir: &Path,
    url: &str,
    virtual_ms: u32,
    (width, height): (u32, u32),
) -> (String, String) {
    let profile = dir.join(format!("chromium-profile-{}", super::cluster::unix_ms()));
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--virtual-time-budget={virtual_ms}"))
        .arg(format!("--window-size={width},{height}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .output()
        .expect("chromium runs");
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(binary)).find(|p| p.is_file())
}

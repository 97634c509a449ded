//! Compiled components on disk, so that a build seen before (also before a restart) skips the
//! compiler: Cranelift takes hundreds of milliseconds for a 200 KB component, loading its compiled
//! form takes a few.
//!
//! An entry is two files named after the component's sha256 and the engine's compatibility hash
//! (`Engine::precompile_compatibility_hash`: the wasmtime version and every setting that changes
//! the code):
//!
//! - `DIGEST-ENGINE.cwasm`: exactly what `Component::serialize` wrote;
//! - `DIGEST-ENGINE.check`: a small JSON header naming the component, the engine, and the length
//!   and sha256 of the `.cwasm`.
//!
//! Deserializing trusts its input (machine code runs from it), so an entry is used only when its
//! header matches this component and engine and the `.cwasm` has the recorded length and sha256.
//! Anything else (truncated, flipped bytes, another engine's or component's file) is ignored: the
//! component is compiled again and the entry rewritten. Readers never delete, writers replace files
//! by rename, so processes sharing a folder cannot hand each other a half-written entry.
//!
//! Only components that passed the world check are written (see `component::load`). The folder is
//! bounded by `compile_cache_mb` of `[limits]`: after each write the least recently used entries go
//! until the rest fits (a hit refreshes an entry's time). Only files named like entries are ever
//! removed, so pointing the setting at a shared folder cannot delete anything else.

use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::engine::engine;

/// Where entries go and how much they may take; `None` (the default): no disk cache.
static SETTINGS: RwLock<Option<Settings>> = RwLock::new(None);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// Turns the disk cache on (in `dir`, at most `max_mb` MiB) or, with `None` or 0 MiB, off.
pub fn configure(dir: Option<PathBuf>, max_mb: u64) {
    let settings = dir.filter(|_| max_mb > 0).map(|dir| Settings { dir, max_bytes: max_mb << 20 });
    *SETTINGS.write().unwrap_or_else(|e| e.into_inner()) = settings;
}

pub fn settings() -> Option<Settings> {
    SETTINGS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The default folder: `$XDG_CACHE_HOME/ebbtide/compiled`, else `~/.cache/ebbtide/compiled`.
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    let base = std::env::var_os("XDG_CACHE_HOME")
        .and_then(absolute)
        .or_else(|| std::env::var_os("HOME").and_then(absolute).map(|home| home.join(".cache")))?;
    Some(base.join("ebbtide").join("compiled"))
}

/// What happened to lookups and writes since start-up (`ebbtide_compile_cache_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Served from the in-memory cache.
    pub memory_hit: u64,
    /// Loaded from disk.
    pub disk_hit: u64,
    /// Compiled (nothing usable in memory or on disk).
    pub miss: u64,
    /// Disk entries ignored as corrupt, truncated or foreign (then rewritten).
    pub invalid: u64,
    /// Disk entries removed to stay within `compile_cache_mb`.
    pub evicted: u64,
}

/// Tiered swaps: new builds that first served from their baseline (Winch) build, and the times the
/// optimized build took over (`ebbtide_tiered_swaps_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tiers {
    pub baseline: u64,
    pub optimized: u64,
}

static BASELINE: AtomicU64 = AtomicU64::new(0);
static OPTIMIZED: AtomicU64 = AtomicU64::new(0);

pub fn tiers() -> Tiers {
    Tiers { baseline: BASELINE.load(Ordering::Relaxed), optimized: OPTIMIZED.load(Ordering::Relaxed) }
}

pub fn count_baseline() {
    BASELINE.fetch_add(1, Ordering::Relaxed);
}

pub fn count_optimized() {
    OPTIMIZED.fetch_add(1, Ordering::Relaxed);
}

static MEMORY_HIT: AtomicU64 = AtomicU64::new(0);
static DISK_HIT: AtomicU64 = AtomicU64::new(0);
static MISS: AtomicU64 = AtomicU64::new(0);
static INVALID: AtomicU64 = AtomicU64::new(0);
static EVICTED: AtomicU64 = AtomicU64::new(0);

pub fn counters() -> Counters {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Counters {
        memory_hit: get(&MEMORY_HIT),
        disk_hit: get(&DISK_HIT),
        miss: get(&MISS),
        invalid: get(&INVALID),
        evicted: get(&EVICTED),
    }
}

pub(super) fn count_memory_hit() {
    MEMORY_HIT.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn count_miss() {
    MISS.fetch_add(1, Ordering::Relaxed);
}

/// The header of an entry (`.check`).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Check {
    format: u32,
    /// sha256 of the component's bytes.
    component: String,
    /// The engine's compatibility hash.
    engine: String,
    /// Length and sha256 of the `.cwasm`.
    bytes: u64,
    sha256: String,
}

const FORMAT: u32 = 1;
const CHECK_MAX_BYTES: u64 = 4096;

/// The engine's compatibility hash, hex: the same wasmtime and settings give the same hash.
fn engine_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        // Hashed through sha256 rather than a std hasher, whose output may change between releases.
        struct Sha(Sha256);
        impl Hasher for Sha {
            fn write(&mut self, bytes: &[u8]) {
                self.0.update(bytes);
            }
            fn finish(&self) -> u64 {
                0
            }
        }
        let mut sha = Sha(Sha256::new());
        std::hash::Hash::hash(&engine().precompile_compatibility_hash(), &mut sha);
        hex::encode(&sha.0.finalize()[..16])
    })
}

fn entry_paths(dir: &Path, digest: &str) -> (PathBuf, PathBuf) {
    let stem = format!("{digest}-{}", engine_hash());
    (dir.join(format!("{stem}.cwasm")), dir.join(format!("{stem}.check")))
}

/// Whether `digest` has an entry on disk (not verified: a cheap guess that loading will not compile).
pub(super) fn has_entry(digest: &str) -> bool {
    settings().is_some_and(|s| entry_paths(&s.dir, digest).1.exists())
}

/// The compiled component for `digest`, if a valid entry is on disk.
pub(super) fn load(digest: &str) -> Option<Component> {
    let settings = settings()?;
    let (cwasm, check) = entry_paths(&settings.dir, digest);
    if !check.exists() {
        return None;
    }
    let started = Instant::now();
    match verified(&cwasm, &check, digest) {
        // SAFETY: the file is what `Component::serialize` wrote for this component with this
        // engine: its length and sha256 match the header written beside it (see `verified`).
        Ok(()) => match unsafe { Component::deserialize_file(engine(), &cwasm) } {
            Ok(component) => {
                DISK_HIT.fetch_add(1, Ordering::Relaxed);
                touch(&cwasm);
                tracing::info!(
                    "compile cache: {} loaded from {} in {:.1} ms",
                    &digest[..12],
                    cwasm.display(),
                    started.elapsed().as_secs_f64() * 1e3
                );
                Some(component)
            }
            Err(e) => invalid(&cwasm, &format!("wasmtime refused it: {e:#}")),
        },
        Err(why) => invalid(&cwasm, &why),
    }
}

fn invalid(cwasm: &Path, why: &str) -> Option<Component> {
    INVALID.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("compile cache: ignoring {} ({why}); compiling again and replacing it", cwasm.display());
    None
}

/// Checks an entry against its header, and the header against this component and engine.
fn verified(cwasm: &Path, check: &Path, digest: &str) -> Result<(), String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(check)
        .and_then(|f| f.take(CHECK_MAX_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("unreadable header: {e}"))?;
    let header: Check = serde_json::from_str(&text).map_err(|e| format!("unreadable header: {e}"))?;
    if header.format != FORMAT || header.component != digest || header.engine != engine_hash() {
        return Err("its header names another format, component or engine".into());
    }
    let bytes = std::fs::read(cwasm).map_err(|e| format!("unreadable: {e}"))?;
    if bytes.len() as u64 != header.bytes {
        return Err(format!("{} bytes where its header says {}", bytes.len(), header.bytes));
    }
    if hex::encode(Sha256::digest(&bytes)) != header.sha256 {
        return Err("its sha256 differs from its header's".into());
    }
    Ok(())
}

/// Marks an entry as just used, so eviction takes the least recently used first.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// Writes `component`'s entry (it passed the world check), then evicts down to the bound. Failures
/// are logged: the cache is an optimisation, never a reason to refuse a policy.
pub(super) fn store(digest: &str, component: &Component) {
    let Some(settings) = settings() else { return };
    if let Err(e) = write_entry(&settings, digest, component) {
        tracing::warn!("compile cache: cannot write {} to {}: {e}", &digest[..12], settings.dir.display());
    }
    evict(&settings);
}

fn write_entry(settings: &Settings, digest: &str, component: &Component) -> std::io::Result<()> {
    let bytes = component.serialize().map_err(std::io::Error::other)?;
    if bytes.len() as u64 > settings.max_bytes {
        tracing::info!(
            "compile cache: {} compiles to {} bytes, over compile_cache_mb; not cached",
            &digest[..12],
            bytes.len()
        );
        return Ok(());
    }
    create_private_dir(&settings.dir)?;
    let header = Check {
        format: FORMAT,
        component: digest.to_owned(),
        engine: engine_hash().to_owned(),
        bytes: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    let (cwasm, check) = entry_paths(&settings.dir, digest);
    // The artifact first: a reader between the two renames sees a header that does not match and
    // compiles, which is slower but never wrong.
    replace(&cwasm, &bytes)?;
    replace(&check, &serde_json::to_vec(&header).map_err(std::io::Error::other)?)
}

/// The folder, readable by this user only: its files become machine code in this process.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Writes `path` whole or not at all: a temporary file beside it, then a rename.
fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("entry");
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!("{TMP_PREFIX}{}-{n}-{name}", std::process::id()));
    let result =
        std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes)).and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

const TMP_PREFIX: &str = ".tmp-";

/// Is `name` one of ours: `HEX64-HEX32.cwasm` or `.check`, or a temporary file of ours?
fn entry_stem(name: &str) -> Option<&str> {
    let stem = name.strip_suffix(".cwasm").or_else(|| name.strip_suffix(".check"))?;
    let (digest, engine) = stem.split_once('-')?;
    let hex = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(digest, 64) && hex(engine, 32)).then_some(stem)
}

/// Removes the least recently used entries until the folder's entries fit in the bound. Temporary
/// files left by a crash are removed after an hour.
fn evict(settings: &Settings) {
    let Ok(read) = std::fs::read_dir(&settings.dir) else { return };
    // Per entry (stem): its last use and the bytes of its two files.
    let mut entries: std::collections::HashMap<String, (SystemTime, u64)> = Default::default();
    for file in read.flatten() {
        let name = file.file_name().to_string_lossy().into_owned();
        let Ok(meta) = file.metadata() else { continue };
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if let Some(rest) = name.strip_prefix(TMP_PREFIX) {
            let stale = modified.elapsed().is_ok_and(|age| age.as_secs() > 3600);
            if stale && rest.splitn(3, '-').nth(2).and_then(entry_stem).is_some() {
                let _ = std::fs::remove_file(file.path());
            }
            continue;
        }
        let Some(stem) = entry_stem(&name) else { continue };
        let entry = entries.entry(stem.to_owned()).or_insert((SystemTime::UNIX_EPOCH, 0));
        if name.ends_with(".cwasm") {
            entry.0 = modified;
        }
        entry.1 += meta.len();
    }
    let mut total: u64 = entries.values().map(|(_, bytes)| bytes).sum();
    if total <= settings.max_bytes {
        return;
    }
    let mut oldest_first: Vec<_> = entries.into_iter().collect();
    oldest_first.sort_by_key(|(_, (used, _))| *used);
    for (stem, (_, bytes)) in oldest_first {
        if total <= settings.max_bytes {
            break;
        }
        let _ = std::fs::remove_file(settings.dir.join(format!("{stem}.cwasm")));
        let _ = std::fs::remove_file(settings.dir.join(format!("{stem}.check")));
        total = total.saturating_sub(bytes);
        EVICTED.fetch_add(1, Ordering::Relaxed);
        tracing::info!("compile cache: evicted {} (compile_cache_mb)", &stem[..12]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_named_like_entries_are_ours() {
        let (d, e) = ("ab".repeat(32), "cd".repeat(16));
        assert!(entry_stem(&format!("{d}-{e}.cwasm")).is_some());
        assert!(entry_stem(&format!("{d}-{e}.check")).is_some());
        assert!(entry_stem(&format!("{d}-{e}.txt")).is_none());
        assert!(entry_stem("notes.cwasm").is_none());
        assert!(entry_stem(&format!("{d}-{e}x.cwasm")).is_none());
    }
}

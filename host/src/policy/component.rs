//! Loading a policy: bytes in, an immutable [`LoadedPolicy`] out, or a typed error saying why not.
//!
//! The pipeline: sha256 digest; header check (empty, not WebAssembly, a core module rather than a
//! component); compile (once per digest: cached in memory and on disk, see `compile_cache`); world and version check; link (`InstancePre`);
//! `describe()` within the limits. A `LoadedPolicy` is prepared once and instantiated per call.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ebbtide_sdk::PolicyInfo;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, ComponentExportIndex, Linker};

use super::bindings::{POLICY_EXPORT, POLICY_EXPORT_ANY_VERSION, ScalingPolicy, ScalingPolicyPre, WORLD};
use super::compile_cache;
use super::engine::engine;
use super::limits::CallLimits;
use super::sandbox::StoreState;
use super::{PolicyError, call};

/// Compiled components kept by digest, so a reload or swap back to a known version costs nothing.
const COMPILED_CACHE_SIZE: usize = 32;

/// Above this instantiation time a policy keeps one instance between decisions. Below it (a Rust
/// guest takes about 15 us) every decision gets a fresh instance: nothing a policy keeps in memory
/// can leak from one decision into the next, so a decision log replays exactly. Interpreted guests
/// (Python, JavaScript) take milliseconds to instantiate and are worth keeping.
pub const REUSE_ABOVE_US: u64 = 100;

/// A policy ready to run: prepared once, instantiated per call. Immutable; swap it whole.
pub struct LoadedPolicy {
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pub size: usize,
    pub info: PolicyInfo,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub limits: CallLimits,
    /// What a fresh instance costs over a kept one, measured at load, in microseconds.
    pub instantiate_us: u64,
    pub(super) pre: ScalingPolicyPre<StoreState>,
    /// `decide` inside the policy export, called directly with the fast-lowering snapshot.
    pub(super) decide_export: ComponentExportIndex,
    /// `name@digest-prefix`, for logs.
    pub(super) label: Arc<str>,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy").field("name", &self.info.name).field("digest", &self.digest).finish()
    }
}

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl LoadedPolicy {
    /// Loads a component. CPU-heavy on first sight of a digest (compilation): call it off any async
    /// runtime. `limits` bound every later call, `describe()` included.
    pub fn load(bytes: &[u8], limits: CallLimits) -> Result<LoadedPolicy, PolicyError> {
        check_header(bytes)?;
        let digest = digest(bytes);
        let (component, from) = compile(bytes, &digest)?;
        let (imports, exports) = check_world(&component)?;
        // Only what passed the world check is kept.
        if from != Compiled::Memory {
            remember(&digest, &component);
        }
        if from == Compiled::Compiler {
            compile_cache::store(&digest, &component);
        }
        LoadedPolicy::link(component, digest, bytes.len(), imports, exports, limits)
    }

    /// Loads a component with the baseline compiler (Winch), for a new build to serve while
    /// Cranelift compiles it: the same checks, nothing cached. `None` without a baseline engine.
    pub fn load_baseline(bytes: &[u8], limits: CallLimits) -> Option<Result<LoadedPolicy, PolicyError>> {
        if !super::engine::baseline_compiler_on() {
            return None;
        }
        let engine = super::engine::baseline_engine()?;
        let load = || {
            check_header(bytes)?;
            let digest = digest(bytes);
            let component = compile_with(engine, bytes)?;
            let (imports, exports) = check_world(&component)?;
            LoadedPolicy::link(component, digest, bytes.len(), imports, exports, limits)
        };
        Some(load())
    }

    /// Whether compiling `digest` with Cranelift would cost nothing (in memory or on disk).
    pub fn is_compiled(digest: &str) -> bool {
        CACHE.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(d, _)| d == digest)
            || compile_cache::has_entry(digest)
    }

    /// Whether this was compiled by the baseline compiler (see [`LoadedPolicy::load_baseline`]).
    pub fn is_baseline(&self) -> bool {
        super::engine::is_baseline(self.pre.engine())
    }

    /// Links a checked component and calls `describe`.
    fn link(
        component: Component,
        digest: String,
        size: usize,
        imports: Vec<String>,
        exports: Vec<String>,
        limits: CallLimits,
    ) -> Result<LoadedPolicy, PolicyError> {
        let pre = linker(component.engine())
            .instantiate_pre(&component)
            .map_err(|e| PolicyError::Incompatible(format!("the component's imports cannot be satisfied: {e:#}")))?;
        let pre = ScalingPolicyPre::new(pre)
            .map_err(|e| PolicyError::Incompatible(format!("the component does not match {WORLD}: {e:#}")))?;
        let decide_export = component
            .get_export_index(None, POLICY_EXPORT)
            .and_then(|iface| component.get_export_index(Some(&iface), "decide"))
            .ok_or_else(|| PolicyError::Incompatible(format!("{POLICY_EXPORT} has no decide function")))?;
        let mut policy = LoadedPolicy {
            decide_export,
            label: format!("?@{}", &digest[..12]).into(),
            digest,
            size,
            info: PolicyInfo { name: String::new(), version: String::new(), summary: String::new(), params: vec![] },
            imports,
            exports,
            limits,
            instantiate_us: 0,
            pre,
        };
        policy.info = call::describe(&policy)?;
        policy.instantiate_us = call::fresh_instance_cost_us(&policy)?;
        policy.label = format!("{}@{}", policy.info.name, &policy.digest[..12]).into();
        Ok(policy)
    }
}

impl LoadedPolicy {
    /// Whether deciding should keep one instance between decisions (see [`REUSE_ABOVE_US`]).
    pub fn prefers_reuse(&self) -> bool {
        self.instantiate_us > REUSE_ABOVE_US
    }
}

fn check_header(bytes: &[u8]) -> Result<(), PolicyError> {
    const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
    const CORE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
    if bytes.is_empty() {
        return Err(PolicyError::InvalidComponent(
            "the file is empty; expected a WebAssembly component built against wit/ (ebbtide:policy@0.1.0)".into(),
        ));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        return Err(PolicyError::InvalidComponent(format!(
            "not WebAssembly: expected the magic bytes 00 61 73 6d, found {}",
            head.join(" ")
        )));
    }
    if bytes[4..8] == CORE_VERSION {
        return Err(PolicyError::InvalidComponent(
            "a core WebAssembly module, not a component: build for wasm32-wasip2, or wrap a wasip1 module with `wasm-tools component new`".into(),
        ));
    }
    if bytes[4..8] != COMPONENT_VERSION {
        return Err(PolicyError::InvalidComponent(format!(
            "unknown WebAssembly binary version {:02x?}; expected a component (0d 00 01 00)",
            &bytes[4..8]
        )));
    }
    Ok(())
}

/// Compiled components, by digest, that passed the world check.
static CACHE: Mutex<Vec<(String, Component)>> = Mutex::new(Vec::new());
/// `compile_timeout_ms` (see [`set_compile_timeout`]).
static COMPILE_TIMEOUT_MS: AtomicU64 = AtomicU64::new(120_000);
/// A compile that outlived its timeout and still runs: Cranelift cannot be stopped, so no other
/// compile starts until it ends (one runaway at most, never a pile of them).
static ABANDONED_COMPILE: AtomicBool = AtomicBool::new(false);

/// Bounds every later compile (`compile_timeout_ms` of `[limits]`).
pub fn set_compile_timeout(timeout: Duration) {
    COMPILE_TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

/// Where a compiled component came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compiled {
    Memory,
    Disk,
    Compiler,
}

/// The compiled component, from the in-memory cache, the disk cache or the compiler.
fn compile(bytes: &[u8], digest: &str) -> Result<(Component, Compiled), PolicyError> {
    if let Some((_, c)) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(d, _)| d == digest) {
        compile_cache::count_memory_hit();
        return Ok((c.clone(), Compiled::Memory));
    }
    if let Some(component) = compile_cache::load(digest) {
        return Ok((component, Compiled::Disk));
    }
    compile_cache::count_miss();
    compile_with(engine(), bytes).map(|component| (component, Compiled::Compiler))
}

/// Compiles with `engine` within `compile_timeout_ms`.
fn compile_with(engine: &'static wasmtime::Engine, bytes: &[u8]) -> Result<Component, PolicyError> {
    if ABANDONED_COMPILE.load(Ordering::Relaxed) {
        return Err(PolicyError::InvalidComponent(
            "an earlier compile that exceeded compile_timeout_ms is still running; try again when it ends".into(),
        ));
    }
    let timeout_ms = COMPILE_TIMEOUT_MS.load(Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    // Set (under its lock) when the caller gave up waiting; the compile thread then clears the flag.
    let given_up = Arc::new(Mutex::new(false));
    let owned = bytes.to_vec();
    let thread_given_up = given_up.clone();
    std::thread::Builder::new()
        .name("ebbtide-compile".into())
        .spawn(move || {
            let result = Component::new(engine, &owned);
            let given_up = thread_given_up.lock().unwrap_or_else(|e| e.into_inner());
            if *given_up {
                ABANDONED_COMPILE.store(false, Ordering::Relaxed);
            } else {
                let _ = tx.send(result);
            }
        })
        .map_err(|e| PolicyError::InvalidComponent(format!("cannot start a compile thread: {e}")))?;
    let result = match rx.recv_timeout(Duration::from_millis(timeout_ms)) {
        Ok(result) => result,
        Err(_) => {
            let mut given_up = given_up.lock().unwrap_or_else(|e| e.into_inner());
            match rx.try_recv() {
                Ok(result) => result,
                Err(_) => {
                    *given_up = true;
                    ABANDONED_COMPILE.store(true, Ordering::Relaxed);
                    return Err(PolicyError::InvalidComponent(format!(
                        "compiling took longer than {timeout_ms} ms (compile_timeout_ms); the component is too large or too complex"
                    )));
                }
            }
        }
    };
    result.map_err(|e| PolicyError::InvalidComponent(format!("the component does not compile: {e:#}")))
}

fn remember(digest: &str, component: &Component) {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= COMPILED_CACHE_SIZE {
        cache.remove(0);
    }
    cache.push((digest.to_owned(), component.clone()));
}

/// The component must export `ebbtide:policy/policy@0.1.0` and import only what the host provides.
fn check_world(component: &Component) -> Result<(Vec<String>, Vec<String>), PolicyError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(component.engine()).map(|(n, _)| n.to_owned()).collect();
    let exports: Vec<String> = ty.exports(component.engine()).map(|(n, _)| n.to_owned()).collect();
    if !exports.iter().any(|e| e == POLICY_EXPORT) {
        if let Some(other) = exports.iter().find(|e| e.starts_with(POLICY_EXPORT_ANY_VERSION)) {
            let version = other.rsplit('@').next().unwrap_or("unversioned");
            return Err(PolicyError::Incompatible(format!(
                "the component was built against ebbtide:policy@{version} (it exports {other}); this scheduler speaks {WORLD} and expects the export {POLICY_EXPORT}; rebuild the policy against this release's wit/"
            )));
        }
        return Err(PolicyError::Incompatible(format!(
            "not an ebbtide policy: expected the world {WORLD} (exporting {POLICY_EXPORT}); the component exports [{}]",
            exports.join(", ")
        )));
    }
    const HOST_INTERFACES: [&str; 2] = ["ebbtide:policy/host@0.1.0", "ebbtide:policy/types@0.1.0"];
    let provided = |name: &str| name.starts_with("wasi:") || HOST_INTERFACES.contains(&name);
    if let Some(bad) = imports.iter().find(|i| !provided(i)) {
        return Err(PolicyError::Incompatible(format!(
            "the component imports {bad}, which ebbtide does not provide; a policy may import ebbtide:policy/{{host,types}}@0.1.0 and WASI 0.2 interfaces"
        )));
    }
    Ok((imports, exports))
}

/// The linker every policy is prepared with: WASI (with the empty context of `sandbox`) and `host`;
/// one per engine.
fn linker(engine: &wasmtime::Engine) -> &'static Linker<StoreState> {
    static MAIN: OnceLock<Linker<StoreState>> = OnceLock::new();
    static BASELINE: OnceLock<Linker<StoreState>> = OnceLock::new();
    let cell = if super::engine::is_baseline(engine) { &BASELINE } else { &MAIN };
    cell.get_or_init(|| {
        let mut linker = Linker::new(engine);
        // Both only fail on duplicate definitions, which this function never makes.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links once");
        super::sandbox::add_virtual_sleep(&mut linker).expect("the clock overrides link once");
        ScalingPolicy::add_to_linker::<StoreState, wasmtime::component::HasSelf<StoreState>>(&mut linker, |s| s)
            .expect("the host interface links once");
        linker
    })
}

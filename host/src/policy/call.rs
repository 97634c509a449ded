//! Calling into a loaded policy under its limits.
//!
//! Every call (instantiation included) runs with a fresh epoch deadline, a fuel budget and the memory
//! limiter armed; a trap, timeout or limit becomes a [`PolicyError`] and the store is thrown away.
//! A fresh store per decision is the default; [`Decider`] can keep one instance between decisions
//! for guests whose instantiation is costly, replacing it after any failure.

use std::sync::Arc;

use ebbtide_sdk::{Decision, PolicyInfo, Snapshot};
use wasmtime::component::{Func, TypedFunc};
use wasmtime::{Store, Trap};

use super::PolicyError;
use super::bindings::{ScalingPolicy, decision_from_wit, info_from_wit, w};
use super::component::LoadedPolicy;
use super::engine::{EPOCH_TICK, ticking};
use super::lowering::WireSnapshot;
use super::sandbox::StoreState;

/// Bounds on a decision, checked after it crosses back: what a sane policy never exceeds.
pub const MAX_COMMANDS: usize = 100_000;
pub const MAX_DIAGNOSTICS: usize = 1_000;
pub const MAX_STATE_BYTES: usize = 1 << 20;
const MAX_TEXT: usize = 4096;

/// A live instance of a policy: its store, the instance and its `decide` export. The generated
/// bindings are only looked up (by name) for the rare `describe` and `validate` calls, not on
/// every instantiation.
pub struct Instance {
    store: Store<StoreState>,
    instance: wasmtime::component::Instance,
    decide: Func,
}

/// `decide` called with the fast-lowering snapshot (see `lowering`).
type DecideFn<'a> = TypedFunc<(&'a str, &'a WireSnapshot<'a>, &'a [u8]), (Result<w::Decision, String>,)>;

impl LoadedPolicy {
    /// A new instance, created within the policy's limits.
    pub fn instantiate(&self) -> Result<Instance, PolicyError> {
        let mut store = Store::new(self.pre.engine(), StoreState::new(self.label.clone(), self.limits.memory_mib));
        store.limiter(|s| &mut s.limiter);
        self.arm(&mut store);
        let ticking = ticking();
        let prepared = self.prepare(&mut store);
        drop(ticking);
        match prepared {
            Ok((instance, decide)) => Ok(Instance { store, instance, decide }),
            Err(e) => Err(self.classify("instantiation", &mut store, e)),
        }
    }

    fn prepare(&self, store: &mut Store<StoreState>) -> wasmtime::Result<(wasmtime::component::Instance, Func)> {
        let instance = self.pre.instance_pre().instantiate(&mut *store)?;
        let decide = instance
            .get_func(&mut *store, self.decide_export)
            .ok_or_else(|| wasmtime::format_err!("the component has no decide export"))?;
        Ok((instance, decide))
    }

    /// One decision in a fresh instance.
    pub fn decide(&self, params: &str, snapshot: &Snapshot, state: &[u8]) -> Result<Decision, PolicyError> {
        self.decide_in(&mut self.instantiate()?, params, snapshot, state)
    }

    /// One decision in an existing instance. After an error the instance must not be used again.
    pub fn decide_in(
        &self,
        instance: &mut Instance,
        params: &str,
        snapshot: &Snapshot,
        state: &[u8],
    ) -> Result<Decision, PolicyError> {
        let wit_snapshot = WireSnapshot::new(snapshot);
        let decide = instance.decide;
        let result = self.run(instance, "decide", |_, s| {
            let f: DecideFn<'_> = decide.typed(&*s)?;
            Ok(f.call(s, (params, &wit_snapshot, state))?.0)
        })?;
        let decision = result.map_err(PolicyError::Refused)?;
        check_decision(&decision, snapshot.names.len())?;
        Ok(decision_from_wit(decision))
    }

    /// `validate(params)`: `Ok(Err(messages))` when the policy rejects them.
    pub fn validate(&self, params: &str) -> Result<Result<(), Vec<String>>, PolicyError> {
        let mut instance = self.instantiate()?;
        self.run(&mut instance, "validate", |i, s| bindings(i, s)?.ebbtide_policy_policy().call_validate(s, params))
    }

    /// Sets the deadline, fuel and limiter for the next call.
    fn arm(&self, store: &mut Store<StoreState>) {
        store.data_mut().begin_call();
        let ticks = self.limits.deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        // Cannot fail: the engine meters fuel (see engine.rs).
        let _ = store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX));
    }

    fn run<R>(
        &self,
        instance: &mut Instance,
        call: &'static str,
        f: impl FnOnce(&wasmtime::component::Instance, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, PolicyError> {
        self.arm(&mut instance.store);
        let ticking = ticking();
        let result = f(&instance.instance, &mut instance.store);
        drop(ticking);
        match result {
            Ok(r) => {
                self.drain_output(&mut instance.store);
                Ok(r)
            }
            Err(e) => Err(self.classify(call, &mut instance.store, e)),
        }
    }

    /// Logs what the guest printed, and returns it.
    fn drain_output(&self, store: &mut Store<StoreState>) -> String {
        let output = store.data().output.drain();
        if !output.is_empty() {
            tracing::debug!(policy = %self.label, "guest output: {}", output.trim_end());
        }
        output
    }

    fn classify(&self, call: &'static str, store: &mut Store<StoreState>, e: wasmtime::Error) -> PolicyError {
        let output = self.drain_output(store);
        if store.data().limiter.exceeded {
            return PolicyError::Memory { call, limit_mib: store.data().limiter.limit_mib };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PolicyError::Timeout { call, deadline_ms: self.limits.deadline_ms },
            Some(Trap::OutOfFuel) => PolicyError::Fuel { call, budget: self.limits.fuel.unwrap_or(u64::MAX) },
            _ => PolicyError::Trap { call, message: trap_message(&e, &output) },
        }
    }
}

/// What a trap says, most useful first: the guest's own last words (a Rust panic's message and place,
/// or the tail of what it printed), then the trap, then the backtrace frames that have names. Frames
/// without names (`<wasm function 474>`) and the Rust runtime's `RUST_BACKTRACE=1` advice, which does
/// nothing for a guest, are left out.
fn trap_message(e: &wasmtime::Error, output: &str) -> String {
    let mut parts = Vec::new();
    if let Some(said) = last_words(output) {
        parts.push(said);
    }
    parts.push(e.root_cause().to_string());
    if let Some(trace) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
        let named: Vec<&str> = trace.frames().iter().filter_map(|f| f.func_name()).take(8).collect();
        if !named.is_empty() {
            parts.push(format!("in {}", named.join(" < ")));
        }
    }
    parts.join("; ")
}

/// A Rust panic's message and location from what the guest printed, or the tail of its output.
fn last_words(output: &str) -> Option<String> {
    let said = output.trim();
    if said.is_empty() {
        return None;
    }
    if let Some(at) = said.rfind("panicked at ") {
        let rest = &said[at + "panicked at ".len()..];
        let (place, message) = rest.split_once(":\n").unwrap_or((rest, ""));
        let message: Vec<&str> =
            message.lines().take_while(|l| !l.starts_with("note: run with `RUST_BACKTRACE")).collect();
        return Some(format!("the policy panicked: {} (at {place})", message.join(" ").trim()));
    }
    let tail: String = said.chars().rev().take(1000).collect::<Vec<_>>().into_iter().rev().collect();
    Some(format!("the guest printed: {tail}"))
}

/// `describe()` in a fresh instance (used once, at load).
pub(super) fn describe(policy: &LoadedPolicy) -> Result<PolicyInfo, PolicyError> {
    let mut instance = policy.instantiate()?;
    let info =
        policy.run(&mut instance, "describe", |i, s| bindings(i, s)?.ebbtide_policy_policy().call_describe(s))?;
    if info.name.is_empty() || info.name.len() > 64 {
        return Err(PolicyError::InvalidDecision(format!(
            "describe() must return a name of 1 to 64 characters, got {:?}",
            info.name
        )));
    }
    Ok(info_from_wit(info))
}

/// The generated bindings of an instance, looked up by export name.
fn bindings(
    instance: &wasmtime::component::Instance,
    store: &mut Store<StoreState>,
) -> wasmtime::Result<ScalingPolicy> {
    ScalingPolicy::new(store, instance)
}

/// What a fresh instance costs over a kept one, in microseconds: the fastest of a few
/// `instantiate + describe` minus the fastest `describe` in a kept instance. Timing a first call, not
/// instantiation alone, counts engines that initialize lazily on first use (a JavaScript guest's).
pub(super) fn fresh_instance_cost_us(policy: &LoadedPolicy) -> Result<u64, PolicyError> {
    let describe = |instance: &mut Instance| {
        policy.run(instance, "describe", |i, s| bindings(i, s)?.ebbtide_policy_policy().call_describe(s)).map(|_| ())
    };
    let (mut fresh, mut kept) = (u64::MAX, u64::MAX);
    let mut instance = policy.instantiate()?;
    for _ in 0..3 {
        let started = std::time::Instant::now();
        describe(&mut policy.instantiate()?)?;
        fresh = fresh.min(started.elapsed().as_micros() as u64);
        let started = std::time::Instant::now();
        describe(&mut instance)?;
        kept = kept.min(started.elapsed().as_micros() as u64);
    }
    Ok(fresh.saturating_sub(kept))
}

fn check_decision(d: &super::bindings::w::Decision, names: usize) -> Result<(), PolicyError> {
    use super::bindings::w::Command;
    let invalid = |m: String| Err(PolicyError::InvalidDecision(m));
    if d.commands.len() > MAX_COMMANDS {
        return invalid(format!("{} commands; at most {MAX_COMMANDS} are accepted", d.commands.len()));
    }
    if d.diagnostics.len() > MAX_DIAGNOSTICS {
        return invalid(format!("{} diagnostics; at most {MAX_DIAGNOSTICS} are accepted", d.diagnostics.len()));
    }
    if d.state.len() > MAX_STATE_BYTES {
        return invalid(format!("state of {} bytes; at most {MAX_STATE_BYTES} are accepted", d.state.len()));
    }
    for c in &d.commands {
        if let Command::Start(s) = c {
            if s.adapter as usize >= names {
                return invalid(format!("a start names adapter id {} but the snapshot has {names} names", s.adapter));
            }
            if let Some(bad) = s.capabilities.iter().find(|c| c.name.is_empty() || c.name.len() > 256) {
                return invalid(format!("a start names a capability of {} bytes; expected 1 to 256", bad.name.len()));
            }
        }
    }
    if let Some(bad) = d.diagnostics.iter().find(|x| x.code.len() > 64 || x.message.len() > MAX_TEXT) {
        return invalid(format!(
            "a diagnostic is too long (code {} bytes, message {} bytes; at most 64 and {MAX_TEXT})",
            bad.code.len(),
            bad.message.len()
        ));
    }
    Ok(())
}

/// Decides with one policy, either in a fresh instance per call (the default) or in an instance kept
/// between calls, which is replaced after any failure (a trapped instance is never re-entered).
pub struct Decider {
    policy: Arc<LoadedPolicy>,
    reuse: bool,
    instance: Option<Instance>,
}

impl Decider {
    pub fn new(policy: Arc<LoadedPolicy>, reuse: bool) -> Self {
        Decider { policy, reuse, instance: None }
    }

    /// Keeps an instance only where instantiation is costly (see `LoadedPolicy::prefers_reuse`):
    /// what the scheduler, the shadow and the simulator all do.
    pub fn preferred(policy: Arc<LoadedPolicy>) -> Self {
        let reuse = policy.prefers_reuse();
        Decider::new(policy, reuse)
    }

    pub fn policy(&self) -> &Arc<LoadedPolicy> {
        &self.policy
    }

    pub fn decide(&mut self, params: &str, snapshot: &Snapshot, state: &[u8]) -> Result<Decision, PolicyError> {
        if !self.reuse {
            return self.policy.decide(params, snapshot, state);
        }
        let mut instance = match self.instance.take() {
            Some(i) => i,
            None => self.policy.instantiate()?,
        };
        let result = self.policy.decide_in(&mut instance, params, snapshot, state);
        if result.is_ok() {
            self.instance = Some(instance);
        }
        result
    }
}

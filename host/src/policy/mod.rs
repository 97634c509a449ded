//! The policy runtime: loading WebAssembly policy components and calling them safely.
//!
//! - [`engine`]: the one wasmtime configuration (pooling, epochs, fuel).
//! - [`limits`]: the per-call limits and their defaults.
//! - [`sandbox`]: the empty, deterministic environment a guest runs in.
//! - [`component`]: bytes to an immutable [`LoadedPolicy`] (digest, checks, `InstancePre`).
//! - [`compile_cache`]: compiled components on disk, verified before use.
//! - [`call`]: calls under limits, fresh or reused instances ([`Decider`]).
//! - [`builtin`], [`source`]: the embedded built-ins and how policies are named.
//! - [`candidate`]: the swap pipeline a new policy passes before it replaces the active one.
//! - [`sample`], [`bench`]: the sample snapshots and the latency measurement.
//!
//! Nothing here panics on bad input: every failure is a [`PolicyError`].

pub mod bench;
pub mod bindings;
pub mod builtin;
pub mod call;
pub mod candidate;
pub mod compile_cache;
pub mod component;
pub mod engine;
mod error;
pub mod limits;
mod lowering;
pub mod sample;
pub mod sandbox;
pub mod source;

pub use call::Decider;
pub use component::LoadedPolicy;
pub use error::PolicyError;
pub use limits::{CallLimits, ScalingLimits};
pub use source::{PolicySource, ReadRules, SourceError};

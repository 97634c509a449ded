//! # ebbtide-sdk
//!
//! Everything a Rust author of an ebbtide scaling policy needs:
//!
//! - [`model`]: plain Rust types for the WIT contract (`wit/policy.wit`): the snapshot a policy reads
//!   and the decision it returns. They build natively, so a policy is unit-tested and benchmarked as
//!   ordinary Rust; inside a WebAssembly guest they are converted from and to the generated bindings.
//! - [`builder`]: a snapshot builder that interns names and capability sets, for hosts and tests.
//! - [`keys`], [`fleet`]: the common model of docs/builtins.md (key-set matching and ordering,
//!   capacity, adapter slots, `place`, victim order), shared by every built-in.
//! - [`params`]: a params reader whose errors name the key and what it accepts.
//! - [`Policy`] and [`export_policy!`]: a policy is one `decide` function plus one line.
//!
//! ```ignore
//! struct MyPolicy;
//! impl ebbtide_sdk::Policy for MyPolicy { /* info, parse_params, decide */ }
//! ebbtide_sdk::export_policy!(MyPolicy);
//! ```

pub mod builder;
pub mod fleet;
pub mod keys;
pub mod model;
pub mod params;
mod policy;
pub mod state;
#[cfg(feature = "vectors")]
pub mod vectors;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use builder::{CapMap, SnapshotBuilder};
pub use fleet::{Fleet, Placer, Unit};
pub use keys::{KeyIndex, KeySet};
pub use model::*;
pub use params::{ParamReader, ParamSpec};
pub use policy::{Policy, decide_json, validate_json};
pub use state::{StateReader, StateWriter};

/// The contract version this SDK implements; the host refuses components of another.
pub const CONTRACT_VERSION: &str = "0.1.0";

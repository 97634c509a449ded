//! ebbtide: a task scheduler for elastic worker fleets whose scaling decisions come from WebAssembly
//! components.
//!
//! - [`policy`]: the policy runtime (wasmtime), the built-ins and the authoring tools' engine.
//! - [`protocol`]: the Cap'n Proto wire protocol.
//! - [`scheduler`]: the scheduler core, free of I/O: tasks, workers, groups, adapters, the scaling loop.
//! - [`server`]: the scheduler's network shell, its policy thread and decision log.
//! - [`simulate`]: the same core and runtime on a virtual clock, with simulated peers.
//! - [`admin`]: the admin HTTP endpoints.
//! - [`adapter`], [`worker`], [`client`]: the other peers.
//! - [`fleet_config`]: capability strings and `[[adapter]]` tables, shared by the command line and
//!   the simulator.
//! - [`cli`]: the command line.

pub mod adapter;
pub mod admin;
pub mod cli;
pub mod client;
pub mod fleet_config;
pub mod policy;
pub mod protocol;
pub mod scheduler;
pub mod server;
pub mod simulate;
pub mod worker;

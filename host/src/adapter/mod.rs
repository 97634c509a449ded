//! Worker adapters: peers that start and stop groups of workers when the scheduler says so.
//!
//! - [`native`]: local `ebbtide worker` processes.

pub mod native;

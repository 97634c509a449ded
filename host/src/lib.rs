//! # ebbtide
//!
//! A task scheduler for elastic worker fleets whose scaling decisions come from WebAssembly
//! components. This crate is the host: the policy runtime ([`policy`]) and the command line ([`cli`]).

pub mod cli;
pub mod policy;

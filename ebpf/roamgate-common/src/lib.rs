//! Types and wire logic shared by the roamgate XDP programs and the userspace
//! control plane.
//!
//! Everything here is `no_std`, allocation-free and panic-free, so the same code
//! runs in the eBPF programs (built for `bpfel-unknown-none`) and on the host,
//! where `cargo test` exercises it.
#![no_std]

pub mod counters;
pub mod flow;
pub mod maps;
pub mod replay;
pub mod siphash;
pub mod wire;

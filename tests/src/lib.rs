//! Test hosts in network namespaces, and the benchmark sections.
//!
//! Integration tests live in `tests/tests/`; they need root.

pub mod afpacket;
pub mod bench;
pub mod call_capture;
pub mod demo;
pub mod freeradius;
pub mod home_gateway;
pub mod mit;
pub mod mobility;
pub mod netns;
pub mod rawbpf;
pub mod switch_on;
pub mod tunnel_net;

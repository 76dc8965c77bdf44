//! Test support shared by roamgate's tests, benchmarks and fuzz seed
//! generator; a dev-dependency only, so none of it ships in the gateway.
//!
//! - [`frame`]: builds and decodes the frames the data plane sees;
//! - `fixture` (feature `dataplane`): byte-exact `BPF_PROG_TEST_RUN` table
//!   tests and throw-away pin directories; `reference` (same feature): the
//!   C reference of the receiving end, built with clang;
//! - [`mip`]: Kerberos service tickets sealed as a KDC would seal them, and
//!   the registration benchmark.

#[cfg(feature = "dataplane")]
pub mod fixture;
pub mod frame;
pub mod mip;
#[cfg(feature = "dataplane")]
pub mod reference;

//! `cargo xtask e2e`: the end-to-end scenarios in network namespaces. Builds
//! `roamgate`, then runs the `mobility_e2e` binary of the integration crate,
//! which runs the Mobile IP scenario (issue 5), then the switch-on scenario
//! (issue 11), and prints ONE JSON object on stdout with the keys of both;
//! it exits non-zero when an expectation fails.
//!
//! - Mobile IP: every gateway runs XDP: the home agent, the mobile node and
//!   the foreign gateways A and B, whose counters (`gateway_a`, `gateway_b`:
//!   transit frames passed, tunnel frames dropped) are part of the JSON.
//! - Switch-on: units switch on through a base station and their domain's
//!   proxy manager (KDC, directory, home agent), move to the foreign domain,
//!   are attacked (replayed, forged, unknown, unauthorised requests; the
//!   directory down) and switch off. Every link is captured to
//!   `target/e2e/<link>.pcap` (the key `pcaps`), and the captures are
//!   checked: tshark decodes them cleanly, no key, account or home address
//!   crosses a link in clear.
//! - Switch-on with MIT krb5kdc as the realm's KDC (key `switch_on_mit`):
//!   the same roles, only `kerberos.kdc` points at MIT.
//!
//! `cargo xtask test` runs the same scenarios as the integration tests
//! `tests/tests/mobility_e2e.rs` and `tests/tests/switch_on_e2e.rs`.

use crate::{build, util};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Keep the configs, logs and captures of the run in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep_logs: Option<std::path::PathBuf>,
    /// Run only this scenario.
    #[arg(long, value_parser = ["mobility", "switch-on", "switch-on-mit"])]
    pub only: Option<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        anyhow::bail!(
            "`cargo xtask e2e` creates network namespaces and loads XDP programs: run it as root"
        );
    }
    build::run(&build::Options::default())?;
    util::step("e2e: Mobile IP and switch-on scenarios in network namespaces");
    let mut cmd = util::cargo();
    cmd.current_dir(util::root()).args([
        "run",
        "--quiet",
        "--package",
        "roamgate-integration",
        "--bin",
        "mobility_e2e",
    ]);
    if let Some(only) = &opts.only {
        cmd.args(["--", only]);
    }
    if let Some(dir) = &opts.keep_logs {
        cmd.env("MOBILITY_E2E_LOGS", dir);
    }
    util::run(&mut cmd)
}

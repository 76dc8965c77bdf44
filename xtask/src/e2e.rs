//! `cargo xtask e2e`: the Mobile IP end-to-end scenario (issue 5) in network
//! namespaces. Builds `roamgate`, then runs the `mobility_e2e` binary of the
//! integration crate, which prints one JSON object on stdout and exits
//! non-zero when an expectation fails. Every gateway runs XDP: the home
//! agent, the mobile node and the foreign gateways A and B, whose counters
//! (`gateway_a`, `gateway_b`: transit frames passed, tunnel frames dropped)
//! are part of the JSON. `cargo xtask test` runs the same
//! scenario as the integration test `tests/tests/mobility_e2e.rs`.

use crate::{build, util};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Keep the configs, logs and captures of the run in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep_logs: Option<std::path::PathBuf>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        anyhow::bail!(
            "`cargo xtask e2e` creates network namespaces and loads XDP programs: run it as root"
        );
    }
    build::run(&build::Options::default())?;
    util::step("e2e: Mobile IP scenario in network namespaces");
    let mut cmd = util::cargo();
    cmd.current_dir(util::root()).args([
        "run",
        "--quiet",
        "--package",
        "roamgate-integration",
        "--bin",
        "mobility_e2e",
    ]);
    if let Some(dir) = &opts.keep_logs {
        cmd.env("MOBILITY_E2E_LOGS", dir);
    }
    util::run(&mut cmd)
}

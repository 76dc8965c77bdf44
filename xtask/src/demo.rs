//! `cargo xtask demo`: builds, then runs the whole system in network
//! namespaces and narrates it (the `demo` binary of the integration crate,
//! `tests/src/demo.rs`): the home gateway, a foreign domain's proxy
//! manager and base station, and two units; switch-on, a call with a
//! handover mid-call, the charge, and forged and replayed traffic dropped
//! and counted. Prints a timeline with the measured figures, writes the
//! pcaps to `target/demo/`, and leaves nothing behind.
//!
//! `cargo xtask test` runs the same demo as `tests/tests/demo.rs`.

use crate::{build, util};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Keep the configs, state and logs of the run in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep_logs: Option<std::path::PathBuf>,
    /// Print only the JSON line of figures (no timeline).
    #[arg(long)]
    pub json: bool,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        anyhow::bail!(
            "`cargo xtask demo` creates network namespaces and loads XDP programs: run it as root (sudo -E cargo xtask demo)"
        );
    }
    build::run(&build::Options::default())?;
    util::run(util::cargo().current_dir(util::root()).args([
        "build",
        "--quiet",
        "--package",
        "roamgate-integration",
        "--bin",
        "demo",
    ]))?;
    util::step("demo: the home gateway, a foreign domain and two units, in network namespaces");
    let mut cmd = std::process::Command::new(util::root().join("target/debug/demo"));
    if opts.json {
        cmd.arg("--json");
    }
    if let Some(dir) = &opts.keep_logs {
        cmd.arg("--keep-logs").arg(dir);
    }
    util::run(&mut cmd)
}

//! `cargo xtask run` and `cargo xtask bench`.

use std::process::Command;

use crate::{build, util};

#[derive(clap::Args)]
pub struct Options {
    /// Gateway configuration file.
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: String,
    /// Extra arguments for `roamgate gateway`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        anyhow::bail!("`cargo xtask run` attaches XDP and must run as root");
    }
    let bin = build::run(&build::Options { release: false })?;
    // A start that fails removes the maps it pinned (roamgate gateway does,
    // for a pin_dir that was empty), so nothing is left behind here.
    util::step("roamgate gateway: the home gateway (Ctrl-C to stop; `roamgate status` shows it)");
    let config = util::root().join(&opts.config);
    util::run(
        Command::new(bin)
            .arg("gateway")
            .arg("--config")
            .arg(config)
            .args(&opts.args),
    )
}

#[derive(clap::Args)]
pub struct BenchOptions {
    /// Where to write the results as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<String>,
    /// Run only these sections (JSON keys), e.g. --only kdc.
    #[arg(long)]
    pub only: Vec<String>,
}

pub fn bench(opts: &BenchOptions) -> anyhow::Result<()> {
    build::run(&build::Options { release: true })?;
    util::step("bench");
    let mut cmd = util::cargo();
    cmd.current_dir(util::root()).args([
        "run",
        "--release",
        "--package",
        "roamgate-integration",
        "--bin",
        "roamgate-bench",
        "--",
    ]);
    if let Some(j) = &opts.json {
        let path = std::path::Path::new(j);
        let abs = if path.is_absolute() {
            path.to_owned()
        } else {
            std::env::current_dir()?.join(path)
        };
        cmd.arg("--json").arg(abs);
    }
    for o in &opts.only {
        cmd.arg("--only").arg(o);
    }
    util::run(&mut cmd)
}

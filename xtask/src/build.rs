//! `cargo xtask build`: the `roamgate` binary, whose build script compiles the
//! eBPF object with Debian's rustc and bpf-linker (userspace/roamgate/build.rs),
//! then a check that the object carries BTF.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _};

use crate::{setup, util};

#[derive(clap::Args, Default)]
pub struct Options {
    /// Build the userspace binary with the release profile (the eBPF object is
    /// always optimised).
    #[arg(long)]
    pub release: bool,
}

pub fn ebpf_object() -> PathBuf {
    util::root().join("target/ebpf/bpfel-unknown-none/release/roamgate")
}

pub fn binary(release: bool) -> PathBuf {
    util::root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("roamgate")
}

/// Builds everything; returns the path of the `roamgate` binary.
pub fn run(opts: &Options) -> anyhow::Result<PathBuf> {
    setup::ensure()?;
    util::step("build");
    let mut cmd = util::cargo();
    cmd.current_dir(util::root())
        .args(["build", "--package", "roamgate"]);
    if opts.release {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let obj = ebpf_object();
    let btf = util::output(
        Command::new("bpftool")
            .args(["btf", "dump", "file"])
            .arg(&obj),
    )
    .with_context(|| format!("bpftool could not read BTF from {}", obj.display()))?;
    if !btf.contains("xdp_md") {
        bail!("{} has BTF but no xdp_md type", obj.display());
    }
    let bin = binary(opts.release);
    eprintln!(
        "built: eBPF object {} (BTF: {} types)",
        obj.display(),
        btf.lines().filter(|l| l.starts_with('[')).count()
    );
    eprintln!("built: {}", bin.display());
    Ok(bin)
}

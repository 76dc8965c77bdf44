//! `cargo xtask test`: what CI runs. Setup when something is missing, lint,
//! then every test: unit tests, eBPF fixtures through BPF_PROG_TEST_RUN, the
//! network-namespace integration tests, the tunnel-data fixtures against the
//! C reference program (ebpf/reference), the data-plane tests again under
//! Linux 6.1 (`cargo xtask kernel`), and a short fuzz pass.

use std::process::Command;

use crate::{build, fuzz, kernel, setup, util};

#[derive(clap::Args)]
pub struct Options {
    /// Skip cargo fmt and clippy.
    #[arg(long)]
    pub no_lint: bool,
    /// Seconds per fuzz target (0 skips fuzzing).
    #[arg(long, default_value_t = 10)]
    pub fuzz_seconds: u32,
    /// Skip the data-plane tests under Linux 6.1 in qemu.
    #[arg(long)]
    pub no_kernel: bool,
    /// Extra arguments for `cargo test` (e.g. a test-name filter).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        anyhow::bail!(
            "`cargo xtask test` loads XDP programs and creates network namespaces: run it as root"
        );
    }
    setup::ensure()?;
    build::run(&build::Options::default())?;
    let root = util::root();

    if !opts.no_lint {
        util::step("lint: cargo fmt --check, clippy (host crates and the eBPF crate)");
        util::run(
            util::cargo()
                .current_dir(&root)
                .args(["fmt", "--all", "--check"]),
        )?;
        util::run(util::cargo().current_dir(&root).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        util::run(
            Command::new("/usr/bin/cargo")
                .current_dir(root.join("ebpf/roamgate-ebpf"))
                .args([
                    "clippy",
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "--target-dir",
                ])
                .arg(root.join("target/ebpf"))
                .args(["--", "-D", "warnings"])
                // Debian's cargo-clippy and clippy-driver, not rustup's proxies.
                .env(
                    "PATH",
                    format!("/usr/bin:{}", std::env::var("PATH").unwrap_or_default()),
                )
                .env("RUSTC", "/usr/bin/rustc")
                .env("RUSTC_BOOTSTRAP", "1")
                // The flags of ebpf/roamgate-ebpf/.cargo/config.toml, as the
                // build uses them (RUSTFLAGS would override them).
                .env_remove("RUSTFLAGS"),
        )?;
    }

    util::step("tests: unit, eBPF fixtures, namespace integration");
    util::run(
        util::cargo()
            .current_dir(&root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&opts.args),
    )?;

    if opts.args.is_empty() {
        util::step("fixtures again, against the C reference of the receiving end");
        util::run(
            util::cargo()
                .current_dir(&root)
                .args(["test", "-p", "roamgate", "--test", "dataplane_fixtures"])
                .env("ROAMGATE_FIXTURE_PROGRAM", "reference"),
        )?;
    }

    if !opts.no_kernel && opts.args.is_empty() {
        kernel::run(&kernel::Options::default())?;
    }

    if opts.fuzz_seconds > 0 && opts.args.is_empty() {
        fuzz::run(&fuzz::Options {
            seconds: opts.fuzz_seconds,
            targets: Vec::new(),
        })?;
    }
    eprintln!("\nxtask test: all steps passed");
    Ok(())
}

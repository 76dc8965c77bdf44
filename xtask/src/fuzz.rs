//! `cargo xtask fuzz`: every cargo-fuzz target under fuzz/, for a bounded time.
//!
//! Each target reads two corpus directories: `fuzz/corpus/<target>/`
//! (git-ignored; what libFuzzer finds is written there) and, when present,
//! `fuzz/seeds/<target>/`: a few valid inputs per target, committed, made
//! by roamgate's own encoders so that a fresh checkout starts past each
//! parser's first checks (a tunnel frame with a correct MAC, an AP-REQ the
//! service accepts, ...). Regenerate them with
//! `cargo run --manifest-path fuzz/seedgen/Cargo.toml -- fuzz/seeds`.

use std::process::Command;

use anyhow::Context as _;

use crate::util;

#[derive(clap::Args)]
pub struct Options {
    /// Seconds per target.
    #[arg(long, default_value_t = 30)]
    pub seconds: u32,
    /// Only these targets (default: all).
    pub targets: Vec<String>,
}

const CARGO_FUZZ_VERSION: &str = "0.13.1";

pub fn targets() -> anyhow::Result<Vec<String>> {
    let toml = std::fs::read_to_string(util::root().join("fuzz/Cargo.toml"))
        .context("reading fuzz/Cargo.toml")?;
    Ok(toml
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "roamgate-fuzz")
        .map(str::to_owned)
        .collect())
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if util::output(Command::new("cargo").args(["+nightly", "fuzz", "--version"])).is_some() {
        return Ok(());
    }
    util::run(Command::new("cargo").args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
    .context("installing cargo-fuzz")
}

/// Files in a target's artifacts directory (0 when it does not exist).
fn artifact_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let all = targets()?;
    let chosen: Vec<String> = if opts.targets.is_empty() {
        all
    } else {
        opts.targets.clone()
    };
    let fuzz_dir = util::root().join("fuzz");
    // Built first, on their own: a target that does not compile is a build
    // error to fix, not a failure the fuzzer found.
    for t in &chosen {
        util::run(
            Command::new("cargo")
                .current_dir(&fuzz_dir)
                .args(["+nightly", "fuzz", "build", t]),
        )
        .with_context(|| {
            format!(
                "fuzz target {t} did not build (the compiler's errors are above; \
                 nothing was fuzzed): fix the build, e.g. after an API change in the crate it \
                 calls, or check the nightly toolchain with `cargo +nightly --version`"
            )
        })?;
    }
    for t in &chosen {
        util::step(&format!("fuzz {t} for {} s", opts.seconds));
        // The first directory is where libFuzzer adds new inputs; cargo-fuzz
        // makes it only when given no directories at all.
        let corpus = fuzz_dir.join("corpus").join(t);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let seeds = fuzz_dir.join("seeds").join(t);
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&fuzz_dir)
            .args(["+nightly", "fuzz", "run", t])
            .arg(&corpus);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        let artifacts = fuzz_dir.join("artifacts").join(t);
        let before = artifact_count(&artifacts);
        let ran = util::run(
            cmd.arg("--")
                .arg(format!("-max_total_time={}", opts.seconds))
                .arg("-rss_limit_mb=2048"),
        );
        if let Err(e) = ran {
            let new = artifact_count(&artifacts).saturating_sub(before);
            return Err(if new > 0 {
                e.context(format!(
                    "fuzz target {t} found a failure: {new} new input(s) in {} \
                     (replay one with `cargo +nightly fuzz run {t} FILE` in fuzz/)",
                    artifacts.display()
                ))
            } else {
                e.context(format!(
                    "fuzz target {t} stopped with an error but saved no failing input: \
                     libFuzzer's own output above names the cause (e.g. a bad flag or corpus \
                     directory)"
                ))
            });
        }
    }
    eprintln!(
        "fuzz: {} targets ran {} s each without a crash",
        chosen.len(),
        opts.seconds
    );
    Ok(())
}

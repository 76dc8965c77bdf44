//! `cargo xtask setup`: installs the toolchain of ../shared/TOOLCHAIN.md and
//! the peers the tests talk to. Idempotent: it checks first and says what it
//! skipped. It never removes or downgrades a package (see [`crate::apt`]):
//! when apt would, it stops and names the packages.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};

use crate::{
    apt::{self, Apt},
    util::{self, output},
};

#[derive(clap::Args)]
pub struct Options {
    /// Only list what setup would install (and any package apt would
    /// remove or downgrade to do it); change nothing.
    #[arg(long)]
    pub check: bool,
}

/// Debian packages: the eBPF toolchain, then the tools the tests use.
pub const PACKAGES: &[(&str, &str)] = &[
    ("llvm-22-dev", "LLVM 22 for bpf-linker"),
    ("libzstd-dev", "bpf-linker link dependency"),
    ("zlib1g-dev", "bpf-linker link dependency"),
    ("rustc-web", "Debian rustc 1.96 with a prebuilt BPF core"),
    ("cargo-web", "Debian cargo for the eBPF build"),
    ("libstd-rust-web-dev-bpf", "core for bpfel-unknown-none"),
    ("rust-web-clippy", "clippy for the eBPF crate"),
    ("bpftool", "BTF and program inspection"),
    (
        "clang-22",
        "builds the C reference XDP program (ebpf/reference) for its fixture pass and the bench",
    ),
    ("iproute2", "namespaces and veth for the integration tests"),
    ("ethtool", "turning off TX checksum offload on test veths"),
    ("iputils-ping", "ping between test hosts"),
    ("python3", "scapy and small HTTP probes in tests"),
    (
        "tshark",
        "independent decoder of captured traffic; its dumpcap captures the e2e links",
    ),
    ("python3-scapy", "independent packet builder"),
    (
        "python3-pylibsrtp",
        "libsrtp, the SRTP interop peer of roamgate-srtp's tests",
    ),
    (
        "libsrtp2-dev",
        "libsrtp's C library, the baseline of the bench's srtp section",
    ),
    (
        "freeradius-utils",
        "radclient, the independent RADIUS client of roamgate-billing's tests",
    ),
    (
        "freeradius",
        "the RADIUS accounting server that roamgate's sender delivers to (tests/billing_radius.rs, own config under a temp dir; its system service is not needed)",
    ),
    ("krb5-kdc", "MIT KDC interop peer"),
    (
        "krb5-admin-server",
        "MIT kadmin.local for the interop realm",
    ),
    ("krb5-user", "MIT kinit/kvno/klist interop peers"),
    (
        "qemu-system-x86",
        "boots Debian's Linux 6.1 for the oldest-kernel tests",
    ),
    ("busybox-static", "the 6.1 guest's shell and cpio"),
    (
        "strace",
        "tests that key and status files are fsync'd after their rename",
    ),
];

/// The packages that must come from the release of a package the machine
/// already has: Debian's qemu packages share one version, and a machine with
/// qemu-utils from bookworm-backports (10.x) cannot take bookworm's
/// qemu-system-x86 (7.2) without apt removing its qemu-utils.
const SAME_RELEASE_AS: &[(&str, &str)] = &[("qemu-system-x86", "qemu-utils")];

/// The backports suite, and the sources file setup adds for it when no
/// configured source lists it.
const BACKPORTS: &str = "bookworm-backports";
const BACKPORTS_SOURCES: &str = "/etc/apt/sources.list.d/roamgate-bookworm-backports.sources";

pub const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// What is missing, as human-readable items.
pub fn missing() -> Vec<String> {
    let mut m: Vec<String> = missing_packages()
        .into_iter()
        .map(|p| format!("package {p}"))
        .collect();
    if !bpf_linker_ok() {
        m.push(format!("bpf-linker {BPF_LINKER_VERSION}"));
    }
    if !bpffs_mounted() {
        m.push("bpffs at /sys/fs/bpf".to_owned());
    }
    m
}

fn missing_packages() -> Vec<&'static str> {
    PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_some_and(|s| s.contains("install ok installed"))
        })
        .collect()
}

fn installed_version(pkg: &str) -> Option<String> {
    let st = output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))?;
    if !st.contains("install ok installed") {
        return None;
    }
    output(Command::new("dpkg-query").args(["-W", "-f=${Version}", pkg]))
}

/// `pkgs` split into (from the default release, from bookworm-backports):
/// a package of [`SAME_RELEASE_AS`] goes to backports when its sibling is
/// installed from there (its version says `~bpo12`).
fn by_release<'a>(pkgs: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    pkgs.iter().partition(|p| {
        !SAME_RELEASE_AS.iter().any(|(pkg, sibling)| {
            pkg == *p && installed_version(sibling).is_some_and(|v| v.contains("~bpo12"))
        })
    })
}

fn backports_configured() -> bool {
    let mut files = vec![std::path::PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(rd.flatten().map(|e| e.path()));
    }
    files.iter().any(|f| {
        (f.extension().is_some_and(|e| e == "list" || e == "sources"))
            && std::fs::read_to_string(f).is_ok_and(|t| {
                t.lines()
                    .any(|l| !l.trim_start().starts_with('#') && l.contains(BACKPORTS))
            })
    })
}

/// Adds bookworm-backports as a source (pinned at apt's default priority
/// for backports, 100: nothing upgrades from it unless asked with `-t`).
fn add_backports() -> anyhow::Result<()> {
    std::fs::write(
        BACKPORTS_SOURCES,
        format!(
            "# Added by `cargo xtask setup` (roamgate): qemu-system-x86 from the same release as\n\
             # the installed qemu-utils. Packages come from here only when asked (-t {BACKPORTS}).\n\
             Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {BACKPORTS}\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )
    .with_context(|| format!("writing {BACKPORTS_SOURCES}"))
}

fn bpf_linker_path() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    Path::new(&home).join(".cargo/bin/bpf-linker")
}

fn bpf_linker_ok() -> bool {
    output(Command::new(bpf_linker_path()).arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
}

fn bpffs_mounted() -> bool {
    Command::new("mountpoint")
        .args(["-q", "/sys/fs/bpf"])
        .status()
        .is_ok_and(|s| s.success())
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !Path::new("/etc/debian_version").exists() {
        bail!(
            "setup supports Debian bookworm or newer (no /etc/debian_version); install by hand: {}",
            PACKAGES.iter().map(|p| p.0).collect::<Vec<_>>().join(" ")
        );
    }
    let missing_now = missing();
    if opts.check {
        return check(&missing_now);
    }
    if !missing_now.is_empty() && !util::is_root() {
        bail!(
            "setup must run as root to install: {} (run `sudo cargo xtask setup`)",
            missing_now.join(", ")
        );
    }

    let pkgs = missing_packages();
    if pkgs.is_empty() {
        eprintln!(
            "setup: skipped apt: all {} packages installed",
            PACKAGES.len()
        );
    } else {
        let (default, backports) = by_release(&pkgs);
        if !default.is_empty() {
            eprintln!("setup: installing {}", default.join(" "));
            Apt::from_env().install(&default)?;
            eprintln!("setup: installed {}", default.join(" "));
        }
        if !backports.is_empty() {
            if !backports_configured() {
                add_backports()?;
                eprintln!(
                    "setup: added {BACKPORTS} as an apt source ({BACKPORTS_SOURCES}): this \
                     machine's qemu-utils comes from there"
                );
            }
            eprintln!(
                "setup: installing {} from {BACKPORTS} (as the installed qemu-utils)",
                backports.join(" ")
            );
            Apt::from_env()
                .with_release(BACKPORTS)
                .install(&backports)?;
            eprintln!("setup: installed {}", backports.join(" "));
        }
    }

    if bpf_linker_ok() {
        eprintln!("setup: skipped bpf-linker: {BPF_LINKER_VERSION} already installed");
    } else {
        // LLVM_PREFIX is what bpf-linker's build script reads; without it, it
        // finds /usr/bin/llvm-config (LLVM 14) and fails to link -lLLVM.
        util::run(
            util::cargo()
                .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
                .args(["--no-default-features", "--features", "llvm-22"])
                .env("LLVM_PREFIX", LLVM_PREFIX)
                .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
        )
        .context("installing bpf-linker")?;
        eprintln!("setup: installed bpf-linker {BPF_LINKER_VERSION}");
    }

    if bpffs_mounted() {
        eprintln!("setup: skipped bpffs: mounted at /sys/fs/bpf");
    } else {
        util::run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
        eprintln!("setup: mounted bpffs at /sys/fs/bpf");
    }
    let still = missing();
    if !still.is_empty() {
        bail!("still missing after setup: {}", still.join(", "));
    }
    Ok(())
}

/// `--check`: lists what setup would do, changes nothing, exits 0.
fn check(missing_now: &[String]) -> anyhow::Result<()> {
    if missing_now.is_empty() {
        eprintln!("setup --check: everything is installed; setup would do nothing");
        return Ok(());
    }
    eprintln!("setup --check: setup would install:");
    for m in missing_now {
        eprintln!("  {m}");
    }
    let pkgs = missing_packages();
    if !pkgs.is_empty() {
        // A simulation changes nothing and needs no root.
        let (default, backports) = by_release(&pkgs);
        if !backports.is_empty() {
            eprintln!(
                "setup --check: {} would come from {BACKPORTS}, as the installed qemu-utils{}",
                backports.join(" "),
                if backports_configured() {
                    String::new()
                } else {
                    format!(" (setup would add it as a source: {BACKPORTS_SOURCES})")
                }
            );
        }
        match Apt::from_env().simulate(&default) {
            Ok(plan) if plan.is_safe() => {
                eprintln!("setup --check: apt would remove or downgrade nothing")
            }
            Ok(plan) => eprintln!("{}", apt::conflict_message(&default, &plan)),
            Err(e) => eprintln!("setup --check: could not simulate the install: {e:#}"),
        }
    }
    Ok(())
}

/// Runs setup when anything is missing (used by build, test and run).
pub fn ensure() -> anyhow::Result<()> {
    if missing().is_empty() {
        return Ok(());
    }
    crate::util::step("setup (something is missing)");
    run(&Options { check: false })
}

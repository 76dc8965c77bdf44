//! `cargo xtask kernel`: the data-plane tests under the oldest kernel roamgate
//! supports. Issue 3 asks the verifier to accept the program on 6.1+, and
//! the verifier of 6.1 is weaker than this host's (it refused a program 6.18
//! accepted), so the claim is checked, not assumed.
//!
//! Debian bookworm's `linux-image-6.1.0-N-amd64` is booted under qemu
//! (software emulation: nested KVM does not boot on these machines) with an
//! initramfs holding busybox, `ip`, `veth.ko` and the data-plane test
//! binaries with their shared libraries. The guest runs each binary and
//! prints one `RG-RESULT <binary> <exit code>` line; every binary must exit 0.

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _};

use crate::util;

/// The integration tests that load the XDP program and run it through
/// BPF_PROG_TEST_RUN (fixtures, map API, harness, rollback on full maps),
/// the one that attaches it in driver mode to a veth, and the namespace
/// tests that send real traffic through it on veths (those that need
/// neither tshark nor the `roamgate` binary): (package, test binary,
/// arguments).
pub const TEST_BINARIES: &[(&str, &str, &[&str])] = &[
    ("roamgate", "dataplane_fixtures", &["--test-threads=2"]),
    ("roamgate", "dataplane_maps", &["--test-threads=2"]),
    ("roamgate", "fixture_harness", &["--test-threads=2"]),
    ("roamgate", "home_agent_rollback", &["--test-threads=2"]),
    ("roamgate", "native_attach", &["--test-threads=2"]),
    (
        "roamgate-integration",
        "dataplane_netns",
        &[
            "--test-threads=1",
            "--exact",
            "xdp_both_ends_real_traffic",
            "spoofed_uplink_frames_never_enter_the_tunnel",
        ],
    ),
];

/// What the namespace tests run besides themselves (scripts/netns.sh and
/// the commands of `roamgate_integration::netns`); busybox's `ping` and
/// `ip` lack options they use.
const NETNS_PROGRAMS: &[&str] = &[
    "/usr/bin/bash",
    "/usr/sbin/ethtool",
    "/usr/bin/ping",
    "/usr/bin/nsenter",
];

/// Guest console deadline (coreutils `timeout`): a hung guest fails the run.
const GUEST_TIMEOUT_SECS: u32 = 900;

#[derive(clap::Args, Default)]
pub struct Options {
    /// Kernel package to boot (default: the newest linux-image-6.1.0-N-amd64
    /// that apt knows).
    #[arg(long)]
    pub package: Option<String>,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("`cargo xtask kernel` downloads a kernel package with apt-get: run it as root");
    }
    let root = util::root();
    let work = root.join("target/kernel");
    fs::create_dir_all(&work)?;

    let mut package = match &opts.package {
        Some(p) => p.clone(),
        None => newest_61_package()?,
    };
    util::step(&format!(
        "kernel: data-plane tests under {package} (qemu, software emulation)"
    ));
    let vmlinuz = match kernel(&work, &package) {
        Ok(v) => v,
        // Stale package lists name a kernel the mirror has replaced by a
        // newer security build: refresh them once and ask again.
        Err(e) => {
            eprintln!("kernel: {e:#}; refreshing the package lists");
            util::run(Command::new("apt-get").args(["update", "-q"]))?;
            if opts.package.is_none() {
                package = newest_61_package()?;
            }
            kernel(&work, &package)?
        }
    };
    let modules = work.join(&package).join("lib/modules");

    let binaries = test_binaries(&root)?;
    let initramfs = work.join("initramfs");
    build_initramfs(&initramfs, &binaries, &modules)?;
    let archive = work.join("initramfs.cpio");
    util::run(
        Command::new("sh")
            .current_dir(&initramfs)
            .arg("-c")
            .arg(format!(
                "find . | busybox cpio -o -H newc > {}",
                archive.display()
            )),
    )?;
    boot(&vmlinuz, &archive, &work.join("console.log"), &binaries)
}

/// The newest `linux-image-6.1.0-N-amd64` in the apt lists (refreshed once if
/// there is none).
fn newest_61_package() -> anyhow::Result<String> {
    for attempt in 0..2 {
        let list = util::output(Command::new("apt-cache").args([
            "search",
            "--names-only",
            r"^linux-image-6\.1\.0-[0-9]+-amd64$",
        ]))
        .unwrap_or_default();
        let newest = list
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|name| {
                let abi = name
                    .strip_prefix("linux-image-6.1.0-")?
                    .strip_suffix("-amd64")?;
                Some((abi.parse::<u32>().ok()?, name.to_owned()))
            })
            .max();
        if let Some((_, name)) = newest {
            return Ok(name);
        }
        if attempt == 0 {
            util::run(Command::new("apt-get").args(["update", "-q"]))?;
        }
    }
    bail!(
        "apt knows no linux-image-6.1.0-N-amd64: this needs Debian bookworm's \
         package lists (deb.debian.org bookworm, bookworm-security)"
    )
}

/// Downloads and unpacks `package` once under `work`; returns its vmlinuz.
fn kernel(work: &Path, package: &str) -> anyhow::Result<PathBuf> {
    let tree = work.join(package);
    if let Some(v) = find_vmlinuz(&tree) {
        return Ok(v);
    }
    let dl = work.join("download");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl)?;
    util::run(
        Command::new("apt-get")
            .current_dir(&dl)
            .args(["download", "-q", package]),
    )?;
    let deb = fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| format!("apt-get download {package} left no .deb"))?;
    util::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree))?;
    let _ = fs::remove_dir_all(&dl);
    find_vmlinuz(&tree).with_context(|| format!("no boot/vmlinuz-* in {package}"))
}

fn find_vmlinuz(tree: &Path) -> Option<PathBuf> {
    fs::read_dir(tree.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

/// Builds the test binaries and returns (name, path) of each.
fn test_binaries(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut cmd = util::cargo();
    cmd.current_dir(root).args(["test", "--no-run"]);
    let packages: BTreeSet<&str> = TEST_BINARIES.iter().map(|t| t.0).collect();
    for p in packages {
        cmd.args(["--package", p]);
    }
    for (_, t, _) in TEST_BINARIES {
        cmd.args(["--test", t]);
    }
    eprintln!("+ {cmd:?}");
    let out = cmd.output().context("cargo test --no-run")?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("building the test binaries failed:\n{log}");
    }
    // "  Executable tests/dataplane_maps.rs (target/debug/deps/dataplane_maps-0123abcd)"
    let mut found = Vec::new();
    for line in log.lines() {
        let Some(rest) = line.trim().strip_prefix("Executable ") else {
            continue;
        };
        let Some(path) = rest.rsplit_once('(').and_then(|(_, p)| p.strip_suffix(')')) else {
            continue;
        };
        let path = root.join(path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .map(|(n, _)| n.to_owned())
            .unwrap_or_default();
        if TEST_BINARIES.iter().any(|t| t.1 == name) {
            found.push((name, path));
        }
    }
    if found.len() != TEST_BINARIES.len() {
        bail!("expected the test binaries {TEST_BINARIES:?}, cargo reported {found:?}");
    }
    Ok(found)
}

/// busybox (static) with its applets, dash, `ip`, `veth.ko`, the stripped test
/// binaries under /t, every shared library they need, and /init.
fn build_initramfs(
    dir: &Path,
    binaries: &[(String, PathBuf)],
    modules: &Path,
) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(dir);
    for d in ["bin", "t", "proc", "sys", "dev", "tmp", "run", "etc"] {
        fs::create_dir_all(dir.join(d))?;
    }
    fs::copy("/usr/bin/busybox", dir.join("bin/busybox"))
        .context("copying /usr/bin/busybox (package busybox-static)")?;
    for applet in [
        "mount", "insmod", "poweroff", "uname", "cat", "echo", "sleep", "sysctl", "env", "awk",
        "grep", "kill", "sed",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    // scripts/netns.sh starts with `#!/usr/bin/env bash`, and the tests find
    // it where the workspace is on the host.
    fs::create_dir_all(dir.join("usr/bin"))?;
    std::os::unix::fs::symlink("/bin/busybox", dir.join("usr/bin/env"))?;
    let script = util::root().join("scripts/netns.sh");
    let in_guest = dir.join(script.strip_prefix("/").unwrap_or(&script));
    fs::create_dir_all(in_guest.parent().unwrap_or(dir))?;
    fs::copy(&script, &in_guest).with_context(|| format!("copying {}", script.display()))?;
    for p in NETNS_PROGRAMS {
        let name = Path::new(p).file_name().context("program path")?;
        fs::copy(p, dir.join("bin").join(name)).with_context(|| format!("copying {p}"))?;
    }
    // Debian's dash as /bin/sh: busybox's shell runs its own applets before
    // PATH, and its `ip` applet cannot create veth pairs.
    fs::copy("/bin/dash", dir.join("bin/sh")).context("copying /bin/dash")?;
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("no `ip` binary (package iproute2)")?;
    fs::copy(ip, dir.join("bin/ip"))?;

    let veth = find_file(modules, "veth.ko").context("no veth.ko in the kernel package")?;
    fs::copy(&veth, dir.join("veth.ko"))?;

    let mut needs: Vec<PathBuf> = vec![PathBuf::from(ip), PathBuf::from("/bin/dash")];
    needs.extend(NETNS_PROGRAMS.iter().map(PathBuf::from));
    for (name, path) in binaries {
        let dst = dir.join("t").join(name);
        util::run(Command::new("strip").arg("-o").arg(&dst).arg(path))?;
        needs.push(path.clone());
    }
    let mut libs = BTreeSet::new();
    for bin in &needs {
        let out = util::output(Command::new("ldd").arg(bin))
            .with_context(|| format!("ldd {}", bin.display()))?;
        for word in out.split_whitespace() {
            if word.starts_with('/') && word.contains(".so") {
                libs.insert(PathBuf::from(word));
            }
        }
    }
    for lib in libs {
        let dst = dir.join(lib.strip_prefix("/").unwrap_or(&lib));
        fs::create_dir_all(dst.parent().unwrap_or(dir))?;
        fs::copy(&lib, &dst).with_context(|| format!("copying {}", lib.display()))?;
    }

    let mut runs = String::new();
    for (name, _) in binaries {
        let args = TEST_BINARIES
            .iter()
            .find(|t| t.1 == name)
            .map(|t| t.2.join(" "))
            .unwrap_or_default();
        runs.push_str(&format!("./{name} {args}; echo \"RG-RESULT {name} $?\"\n"));
    }
    let init = dir.join("init");
    fs::write(
        &init,
        format!(
            "#!/bin/sh\n\
             export PATH=/bin:/usr/bin\n\
             mount -t proc proc /proc\n\
             mount -t sysfs sys /sys\n\
             mount -t devtmpfs dev /dev\n\
             mount -t bpf bpf /sys/fs/bpf\n\
             mount -t tmpfs tmp /tmp\n\
             mount -t tmpfs run /run\n\
             insmod /veth.ko || echo \"RG-ERROR insmod veth.ko failed\"\n\
             echo \"RG-KERNEL $(uname -r)\"\n\
             cd /t\n\
             {runs}\
             poweroff -f\n"
        ),
    )?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Boots the guest, echoes its console (also to `log`), and checks that every
/// test binary reported exit code 0.
fn boot(
    vmlinuz: &Path,
    initramfs: &Path,
    log: &Path,
    binaries: &[(String, PathBuf)],
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.arg(GUEST_TIMEOUT_SECS.to_string())
        .arg("qemu-system-x86_64")
        .args(["-accel", "tcg,thread=multi", "-cpu", "max", "-m", "2048"])
        .args(["-smp", "2", "-nographic", "-no-reboot", "-kernel"])
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!("+ {cmd:?}");
    let mut child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
    let stdout = child.stdout.take().context("qemu stdout")?;
    let mut console = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default().replace('\r', "");
        eprintln!("[6.1] {line}");
        console.push_str(&line);
        console.push('\n');
    }
    let status = child.wait()?;
    fs::write(log, &console)?;
    let kernel = console
        .lines()
        .find_map(|l| l.split_once("RG-KERNEL ").map(|(_, k)| k.trim()))
        .map(str::to_owned);
    let mut failed = Vec::new();
    for (name, _) in binaries {
        let rc = console.lines().find_map(|l| {
            l.split_once("RG-RESULT ")?
                .1
                .strip_prefix(name.as_str())?
                .trim()
                .parse::<i32>()
                .ok()
        });
        match rc {
            Some(0) => {}
            Some(rc) => failed.push(format!("{name} exited {rc}")),
            None => failed.push(format!("{name} did not finish")),
        }
    }
    if kernel.is_none() || !failed.is_empty() {
        bail!(
            "under kernel {}: {} (qemu: {status}; console in {})",
            kernel.as_deref().unwrap_or("(did not boot)"),
            if failed.is_empty() {
                "no test ran".to_owned()
            } else {
                failed.join(", ")
            },
            log.display()
        );
    }
    eprintln!(
        "kernel {}: {} test binaries passed in {:.0} s",
        kernel.unwrap_or_default(),
        binaries.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

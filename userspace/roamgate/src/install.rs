//! `roamgate install --systemd`: puts this binary, one hardened systemd unit
//! per long-running role (config/systemd/, embedded) and the default
//! configurations on a host. Configurations that exist are never touched;
//! the units and the binary are this release's own and are replaced.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

/// Where the units' `ExecStart` expects the binary.
pub const DEFAULT_BIN_DIR: &str = "/usr/local/bin";
/// The system user of the roles that need no root.
pub const SERVICE_USER: &str = "roamgate";

/// A role's unit and the configuration its `ExecStart` reads.
pub struct RoleFiles {
    pub unit_name: &'static str,
    pub unit: &'static str,
    /// File name under /etc/roamgate and its default text.
    pub config: Option<(&'static str, &'static str)>,
}

macro_rules! role {
    ($unit:literal, $config:literal) => {
        RoleFiles {
            unit_name: $unit,
            unit: include_str!(concat!("../../../config/systemd/", $unit)),
            config: Some(($config, include_str!(concat!("../../../config/", $config)))),
        }
    };
    ($unit:literal) => {
        RoleFiles {
            unit_name: $unit,
            unit: include_str!(concat!("../../../config/systemd/", $unit)),
            config: None,
        }
    };
}

/// Every long-running role. The KDC takes its settings on the command line.
pub const ROLES: &[RoleFiles] = &[
    role!("roamgate-gateway.service", "gateway.toml"),
    role!("roamgate-home-agent.service", "home-agent.toml"),
    role!("roamgate-proxy-manager.service", "proxy-manager.toml"),
    role!("roamgate-base-station.service", "base-station.toml"),
    role!("roamgate-kdc.service"),
    role!("roamgate-directory.service", "directory.toml"),
    role!("roamgate-billing.service", "billing.toml"),
    role!("roamgate-mobile-node.service", "mobile-node.toml"),
    role!("roamgate-tunnel.service", "tunnel.toml"),
];

#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Root of the target file system ("/" for this host).
    pub prefix: PathBuf,
    /// Absolute directory of the binary on the target.
    pub bin_dir: PathBuf,
    /// Print what would be done, change nothing.
    pub dry_run: bool,
    /// The binary to copy (normally this process's own).
    pub binary: PathBuf,
}

/// `path` (absolute on the target) under `prefix`.
fn under(prefix: &Path, path: &Path) -> PathBuf {
    prefix.join(path.strip_prefix("/").unwrap_or(path))
}

/// Installs; returns the lines that say what was done (also printed by the
/// CLI).
pub fn install(o: &InstallOptions) -> anyhow::Result<Vec<String>> {
    if !o.bin_dir.is_absolute() {
        bail!(
            "--bin-dir {}: give an absolute path (it is written into the units' ExecStart)",
            o.bin_dir.display()
        );
    }
    let on_host = o.prefix == Path::new("/");
    // SAFETY: geteuid has no preconditions.
    if on_host && !o.dry_run && unsafe { libc::geteuid() } != 0 {
        bail!("installing on this host needs root: run it with sudo, or use --dry-run or --prefix DIR");
    }
    let would = if o.dry_run { "would " } else { "" };
    let mut log = Vec::new();

    let bin = o.bin_dir.join("roamgate");
    let bin_dest = under(&o.prefix, &bin);
    if !o.dry_run {
        let data = fs::read(&o.binary)
            .with_context(|| format!("reading the binary {}", o.binary.display()))?;
        replace(&bin_dest, &data, 0o755)?;
    }
    log.push(format!("{would}install {}", bin_dest.display()));

    let unit_dir = under(&o.prefix, Path::new("/etc/systemd/system"));
    let exec = bin.to_string_lossy();
    for r in ROLES {
        let text = r
            .unit
            .replace(&format!("{DEFAULT_BIN_DIR}/roamgate"), &exec);
        let dest = unit_dir.join(r.unit_name);
        if !o.dry_run {
            replace(&dest, text.as_bytes(), 0o644)?;
        }
        log.push(format!("{would}install {}", dest.display()));
    }

    let config_dir = under(&o.prefix, Path::new("/etc/roamgate"));
    for (name, text) in ROLES.iter().filter_map(|r| r.config) {
        let dest = config_dir.join(name);
        if dest.exists() {
            log.push(format!(
                "kept {} (it exists; never overwritten)",
                dest.display()
            ));
            continue;
        }
        if !o.dry_run {
            create_new(&dest, text.as_bytes(), 0o644)?;
        }
        log.push(format!("{would}install {}", dest.display()));
    }

    if !on_host {
        log.push(format!(
            "skipped creating the system user {SERVICE_USER} and `systemctl daemon-reload` (--prefix is not /)"
        ));
    } else if o.dry_run {
        log.push(format!(
            "would create the system user {SERVICE_USER} (if missing) and run `systemctl daemon-reload`"
        ));
    } else {
        if user_exists(SERVICE_USER) {
            log.push(format!("kept the system user {SERVICE_USER} (it exists)"));
        } else {
            run(Command::new("useradd").args([
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/var/lib/roamgate",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ]))?;
            log.push(format!("created the system user {SERVICE_USER}"));
        }
        run(Command::new("systemctl").arg("daemon-reload"))?;
        log.push("ran systemctl daemon-reload".to_owned());
    }
    log.push(format!(
        "next: edit the configs in /etc/roamgate (keytabs of the roles that run as {SERVICE_USER} \
         must be owned by it), then start the roles this host runs:"
    ));
    for r in ROLES {
        log.push(format!("  systemctl enable --now {}", r.unit_name));
    }
    Ok(log)
}

/// Replaces `dest` atomically: a temp file beside it, then a rename (a
/// running binary is replaced without "text file busy").
fn replace(dest: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = write_temp(dest, data, mode)?;
    fs::rename(&tmp, dest)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))
}

/// Creates `dest` only if it does not exist: a temp file, then a hard link
/// (which fails if `dest` appeared meanwhile), so `dest` is never half
/// written and never overwritten.
fn create_new(dest: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = write_temp(dest, data, mode)?;
    let res = fs::hard_link(&tmp, dest);
    let _ = fs::remove_file(&tmp);
    res.with_context(|| format!("creating {}", dest.display()))
}

fn write_temp(dest: &Path, data: &[u8], mode: u32) -> anyhow::Result<PathBuf> {
    let dir = dest
        .parent()
        .with_context(|| format!("{} has no directory", dest.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(format!(".roamgate-install-{}", std::process::id()));
    let tmp = dir.join(name);
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)
        .and_then(|_| f.set_permissions(fs::Permissions::from_mode(mode)))
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    Ok(tmp)
}

fn user_exists(name: &str) -> bool {
    Command::new("getent")
        .args(["passwd", name])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(prefix: &Path, dry_run: bool) -> InstallOptions {
        let binary = prefix.join("src-roamgate");
        fs::write(&binary, b"#!/bin/sh\n").unwrap();
        InstallOptions {
            prefix: prefix.to_owned(),
            bin_dir: PathBuf::from("/opt/rg/bin"),
            dry_run,
            binary,
        }
    }

    #[test]
    fn installs_under_a_prefix_and_keeps_an_existing_config() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/roamgate")).unwrap();
        fs::write(root.join("etc/roamgate/directory.toml"), "# mine\n").unwrap();

        let log = install(&opts(root, false)).unwrap();

        let bin = root.join("opt/rg/bin/roamgate");
        assert_eq!(fs::read(&bin).unwrap(), b"#!/bin/sh\n");
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o755
        );
        for r in ROLES {
            let unit =
                fs::read_to_string(root.join("etc/systemd/system").join(r.unit_name)).unwrap();
            assert!(unit.contains("ExecStart=/opt/rg/bin/roamgate "), "{unit}");
            assert!(!unit.contains(DEFAULT_BIN_DIR), "{unit}");
        }
        assert_eq!(
            fs::read_to_string(root.join("etc/roamgate/directory.toml")).unwrap(),
            "# mine\n",
            "an existing config is kept"
        );
        assert_eq!(
            fs::read_to_string(root.join("etc/roamgate/home-agent.toml")).unwrap(),
            include_str!("../../../config/home-agent.toml")
        );
        assert!(log
            .iter()
            .any(|l| l.starts_with("kept") && l.contains("directory.toml")));
        assert!(log
            .iter()
            .any(|l| l.contains("daemon-reload") && l.starts_with("skipped")));
        assert!(log
            .iter()
            .any(|l| l.trim() == "systemctl enable --now roamgate-home-agent.service"));
        // No temp file is left behind.
        let leftovers: Vec<_> = walk(root)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".roamgate-install-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A second run replaces the units and still keeps the configs.
        install(&opts(root, false)).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("etc/roamgate/directory.toml")).unwrap(),
            "# mine\n"
        );
    }

    #[test]
    fn dry_run_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = install(&opts(dir.path(), true)).unwrap();
        assert!(!dir.path().join("etc").exists());
        assert!(!dir.path().join("opt").exists());
        assert!(log.iter().any(|l| l.starts_with("would install")));
    }

    #[test]
    fn every_unit_is_hardened_and_runs_its_role() {
        for r in ROLES {
            let u = r.unit;
            for key in [
                "ProtectSystem=strict",
                "ProtectHome=yes",
                "PrivateTmp=yes",
                "NoNewPrivileges=yes",
                "Restart=on-failure",
                "CapabilityBoundingSet=",
            ] {
                assert!(u.contains(key), "{} lacks {key}", r.unit_name);
            }
            if let Some((config, _)) = r.config {
                assert!(
                    u.contains(&format!("--config /etc/roamgate/{config}")),
                    "{} does not read /etc/roamgate/{config}",
                    r.unit_name
                );
            }
            // Only the roles that attach XDP get its capabilities.
            let xdp = u.contains("CapabilityBoundingSet=CAP_BPF");
            assert_eq!(
                xdp,
                u.contains("ReadWritePaths=/sys/fs/bpf"),
                "{}",
                r.unit_name
            );
            assert!(xdp || u.contains("User=roamgate") || r.unit_name.contains("tunnel"));
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
        out
    }
}

//! apt, used so that setup never removes or downgrades a package the user
//! already has: simulate first, refuse a plan that removes or downgrades
//! anything, then install with `--no-remove` (and never
//! `--allow-downgrades`) so apt itself refuses too if the plan changed.

use std::{ffi::OsString, process::Command};

use anyhow::{bail, Context as _};

use crate::util::run;

/// How apt is found: the `PATH` its commands are looked up in (a test puts
/// a fake `apt-get` first).
pub struct Apt {
    path: OsString,
    /// `-t RELEASE`: prefer this release for the packages named and what
    /// they need (e.g. qemu from bookworm-backports, see setup).
    release: Option<String>,
}

/// What an `apt-get install -s` would do to packages already installed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `Remv NAME [VERSION]` lines: name and installed version.
    pub removals: Vec<(String, String)>,
    /// `Inst NAME [OLD] (NEW ...)` lines where NEW sorts before OLD.
    pub downgrades: Vec<(String, String, String)>,
}

impl Plan {
    pub fn is_safe(&self) -> bool {
        self.removals.is_empty() && self.downgrades.is_empty()
    }
}

impl Apt {
    pub fn from_env() -> Self {
        Self {
            path: std::env::var_os("PATH")
                .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            release: None,
        }
    }

    /// The same apt, preferring `release` (`apt-get -t`).
    pub fn with_release(mut self, release: &str) -> Self {
        self.release = Some(release.to_owned());
        self
    }

    #[cfg(test)]
    pub fn with_path(path: OsString) -> Self {
        Self {
            path,
            release: None,
        }
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        // Setting PATH on the child also makes std look `program` up in it.
        c.env("PATH", &self.path)
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    fn apt_get(&self) -> Command {
        self.command("apt-get")
    }

    fn release_args(&self) -> Vec<&str> {
        match &self.release {
            Some(r) => vec!["-t", r],
            None => vec![],
        }
    }

    /// What installing `pkgs` would do, without doing it (no root needed).
    pub fn simulate(&self, pkgs: &[&str]) -> anyhow::Result<Plan> {
        // No --no-remove here: with it apt stops before printing the Remv
        // lines that name what it would remove.
        let out = self
            .apt_get()
            .args(["install", "-s", "-q", "--no-install-recommends"])
            .args(self.release_args())
            .args(pkgs)
            .output()
            .context("starting apt-get install -s")?;
        if !out.status.success() {
            bail!(
                "apt-get install -s {} failed ({}): {}",
                pkgs.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(self.plan(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Parses a simulation's `Remv` and `Inst` lines.
    fn plan(&self, simulation: &str) -> Plan {
        let mut plan = Plan::default();
        for line in simulation.lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("Remv"), Some(name), version) => plan.removals.push((
                    name.to_owned(),
                    version.map(bracketed).unwrap_or_default().to_owned(),
                )),
                (Some("Inst"), Some(name), Some(old)) if old.starts_with('[') => {
                    let new = words
                        .next()
                        .map(|w| w.trim_start_matches('('))
                        .unwrap_or("");
                    let old = bracketed(old);
                    if !new.is_empty() && self.version_lt(new, old) {
                        plan.downgrades
                            .push((name.to_owned(), old.to_owned(), new.to_owned()));
                    }
                }
                _ => {}
            }
        }
        plan
    }

    /// Debian version order through `dpkg --compare-versions`; a version
    /// dpkg cannot compare counts as a downgrade (refuse rather than risk).
    fn version_lt(&self, a: &str, b: &str) -> bool {
        !self
            .command("dpkg")
            .args(["--compare-versions", a, "ge", b])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Installs `pkgs` if apt's plan removes and downgrades nothing;
    /// otherwise stops, naming the conflicts and the way out.
    pub fn install(&self, pkgs: &[&str]) -> anyhow::Result<()> {
        run(self.apt_get().args(["update", "-q"]))?;
        let plan = self.simulate(pkgs)?;
        if !plan.is_safe() {
            bail!("{}", conflict_message(pkgs, &plan));
        }
        run(self
            .apt_get()
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "--no-remove",
            ])
            .args(self.release_args())
            .args(pkgs))
        .context("apt-get install (--no-remove)")
    }
}

/// `[1.2-3]` → `1.2-3`.
fn bracketed(w: &str) -> &str {
    w.trim_start_matches('[').trim_end_matches(']')
}

/// The stop message: what apt would remove or downgrade, and what to do.
pub fn conflict_message(pkgs: &[&str], plan: &Plan) -> String {
    let mut s = String::from(
        "setup stopped: installing its packages would change packages you already have, and \
         setup never removes or downgrades anything. Nothing was changed.\n",
    );
    for (name, v) in &plan.removals {
        s.push_str(&format!("  apt would REMOVE    {name} {v}\n"));
    }
    for (name, old, new) in &plan.downgrades {
        s.push_str(&format!("  apt would DOWNGRADE {name} {old} -> {new}\n"));
    }
    s.push_str(&format!(
        "Way out: decide for yourself, then either install by hand and let apt show and ask \
         (`apt-get install --no-install-recommends {}`), or keep your packages and install the \
         others one by one; then run `cargo xtask setup` again (it skips what is installed).",
        pkgs.join(" ")
    ));
    s
}

#[cfg(test)]
mod tests {
    use std::{os::unix::fs::PermissionsExt as _, path::Path};

    use super::*;

    /// A directory with a fake `apt-get` that logs its argv and prints
    /// `simulation` for `install -s`.
    fn fake_apt(dir: &Path, simulation: &str) -> Apt {
        std::fs::write(dir.join("simulation"), simulation).unwrap();
        let script = format!(
            "#!/bin/sh\necho \"$*\" >> {log}\ncase \" $* \" in *' -s '*) cat {sim};; esac\nexit 0\n",
            log = dir.join("argv.log").display(),
            sim = dir.join("simulation").display(),
        );
        let apt = dir.join("apt-get");
        std::fs::write(&apt, script).unwrap();
        std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut path = OsString::from(dir);
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_default());
        Apt::with_path(path)
    }

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-apt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const REMOVES: &str = "NOTE: This is only a simulation!\n\
        Remv qemu-utils [1:7.2+dfsg-7+deb12u7]\n\
        Inst krb5-kdc (1.20.1-2+deb12u2 Debian:12.8/stable [amd64])\n\
        Conf krb5-kdc (1.20.1-2+deb12u2 Debian:12.8/stable [amd64])\n";

    #[test]
    fn stops_before_installing_when_apt_would_remove_a_package() {
        let dir = tempdir("remove");
        let apt = fake_apt(&dir, REMOVES);
        let err = apt.install(&["krb5-kdc"]).unwrap_err().to_string();
        assert!(
            err.contains("REMOVE    qemu-utils 1:7.2+dfsg-7+deb12u7"),
            "{err}"
        );
        assert!(err.contains("Way out"), "{err}");
        assert!(err.contains("Nothing was changed"), "{err}");
        let log = std::fs::read_to_string(dir.join("argv.log")).unwrap();
        let calls: Vec<&str> = log.lines().collect();
        assert_eq!(
            calls,
            [
                "update -q",
                "install -s -q --no-install-recommends krb5-kdc"
            ],
            "the real install never ran"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn installs_with_no_remove_when_the_plan_is_safe() {
        let dir = tempdir("safe");
        let apt = fake_apt(
            &dir,
            "Inst krb5-kdc (1.20.1-2 Debian:12.8/stable [amd64])\n\
             Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12.8/stable [amd64])\n",
        );
        apt.install(&["krb5-kdc"]).unwrap();
        let log = std::fs::read_to_string(dir.join("argv.log")).unwrap();
        let last = log.lines().last().unwrap();
        assert_eq!(
            last,
            "install -y -q --no-install-recommends --no-remove krb5-kdc"
        );
        assert!(!log.contains("allow-downgrades"), "{log}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_release_is_asked_for_in_both_the_simulation_and_the_install() {
        let dir = tempdir("release");
        let apt = fake_apt(
            &dir,
            "Inst qemu-system-x86 (1:10.0.2+ds-2+deb13u1~bpo12+1 Debian Backports [amd64])\n",
        )
        .with_release("bookworm-backports");
        apt.install(&["qemu-system-x86"]).unwrap();
        let log = std::fs::read_to_string(dir.join("argv.log")).unwrap();
        let calls: Vec<&str> = log.lines().collect();
        assert_eq!(
            calls[1..],
            [
                "install -s -q --no-install-recommends -t bookworm-backports qemu-system-x86",
                "install -y -q --no-install-recommends --no-remove -t bookworm-backports \
                 qemu-system-x86"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_downgrade_is_a_conflict_and_an_upgrade_is_not() {
        let apt = Apt::from_env();
        let plan = apt.plan(
            "Inst bpftool [7.1.0+6.1.119-1] (7.0.0+6.1.99-1 Debian:12/stable [amd64])\n\
             Inst libc6 [2.36-9] (2.36-9+deb12u9 Debian:12.8/stable [amd64])\n",
        );
        assert_eq!(
            plan.downgrades,
            [(
                "bpftool".to_owned(),
                "7.1.0+6.1.119-1".to_owned(),
                "7.0.0+6.1.99-1".to_owned()
            )]
        );
        assert!(plan.removals.is_empty());
        assert!(!plan.is_safe());
    }
}

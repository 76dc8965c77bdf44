//! Builds the eBPF programs (ebpf/roamgate-ebpf) with Debian's rustc and
//! bpf-linker, following ../shared/TOOLCHAIN.md, and tells the crate where the
//! object is so `include_bytes_aligned!` can embed it.
//!
//! Set `ROAMGATE_EBPF_OBJ` to use an object built elsewhere.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

const BPF_TARGET: &str = "bpfel-unknown-none";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";

fn main() {
    println!("cargo:rerun-if-env-changed=ROAMGATE_EBPF_OBJ");
    if let Ok(obj) = env::var("ROAMGATE_EBPF_OBJ") {
        println!("cargo:rustc-env=ROAMGATE_EBPF_OBJ={obj}");
        println!("cargo:rerun-if-changed={obj}");
        return;
    }

    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let ebpf_dir = root.join("ebpf/roamgate-ebpf");
    let common_dir = root.join("ebpf/roamgate-common");
    for dir in [&ebpf_dir, &common_dir] {
        rerun_if_tree_changed(&dir.join("src"));
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join(".cargo/config.toml").display()
    );

    for (tool, hint) in [
        (DEBIAN_RUSTC, "Debian's rustc-web"),
        (DEBIAN_CARGO, "Debian's cargo-web"),
    ] {
        if !Path::new(tool).exists() {
            panic!("{tool} ({hint}) is missing: run `cargo xtask setup` first");
        }
    }

    let target_dir = root.join("target/ebpf");
    let mut cmd = Command::new(DEBIAN_CARGO);
    cmd.current_dir(&ebpf_dir)
        .args(["build", "--release", "--target", BPF_TARGET, "--target-dir"])
        .arg(&target_dir);
    // The outer cargo's environment describes the host build; none of it
    // applies to the BPF build.
    for (key, _) in env::vars_os() {
        let k = key.to_string_lossy();
        if k.starts_with("CARGO") || k.starts_with("RUST") {
            cmd.env_remove(&key);
        }
    }
    let path = format!(
        "{}:{}",
        env::var("HOME")
            .map(|h| format!("{h}/.cargo/bin"))
            .unwrap_or_default(),
        env::var("PATH").unwrap_or_default()
    );
    cmd.env("PATH", path)
        .env("RUSTC", DEBIAN_RUSTC)
        .env("RUSTC_BOOTSTRAP", "1");
    // Codegen flags: ebpf/roamgate-ebpf/.cargo/config.toml (RUSTFLAGS, removed
    // above, would override them).
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {DEBIAN_CARGO}: {e}; run `cargo xtask setup`"));
    if !status.success() {
        panic!("building the eBPF programs failed ({status}); run `cargo xtask setup` if bpf-linker is missing");
    }
    let obj = target_dir.join(BPF_TARGET).join("release/roamgate");
    println!("cargo:rustc-env=ROAMGATE_EBPF_OBJ={}", obj.display());
}

fn rerun_if_tree_changed(dir: &Path) {
    println!("cargo:rerun-if-changed={}", dir.display());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                rerun_if_tree_changed(&p);
            } else {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
}

//! The C reference of the receiving end, `ebpf/reference/decap_verify.c`:
//! the decap_verify work of roamgate's XDP program written in C, built with
//! clang here so that the bench can time the two side by side and the
//! fixtures can check that they do the same thing (docs/performance.md).

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// The compiler: Debian's clang on the same LLVM (22) that links the Rust
/// program, installed by `cargo xtask setup`.
pub const CLANG: &str = "clang-22";

/// How the bench and the fixtures build it: v3 (ALU32, atomics with fetch)
/// is also what LLVM 22 gives the Rust program, and the misaligned-access
/// feature is the Rust build's too (ebpf/roamgate-ebpf/.cargo/config.toml),
/// so both compilers may do the same.
pub const COMPILE_FLAGS: &[&str] = &[
    "-O2",
    "-g",
    "-target",
    "bpf",
    "-mcpu=v3",
    "-Xclang",
    "-target-feature",
    "-Xclang",
    "+allows-misaligned-mem-access",
    "-Wall",
    "-Werror",
];

/// Set to `reference` to run the fixtures against the C program instead of
/// roamgate's (see `FixtureRunner::new`).
pub const FIXTURE_PROGRAM_ENV: &str = "ROAMGATE_FIXTURE_PROGRAM";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The source file.
pub fn source() -> PathBuf {
    workspace().join("ebpf/reference/decap_verify.c")
}

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("running {CLANG}: {0}; install it with `cargo xtask setup`")]
    Spawn(#[source] std::io::Error),
    #[error("{CLANG} could not build {file}:\n{stderr}")]
    Compile { file: String, stderr: String },
    #[error("building the reference failed earlier in this process: {0}")]
    Earlier(String),
    #[error("reading {path}: {err}")]
    Read {
        path: String,
        #[source]
        err: std::io::Error,
    },
}

/// The ELF object ([`COMPILE_FLAGS`]), in 8-byte aligned memory as the
/// loader wants it. Compiled once per process.
pub fn object() -> Result<AlignedObject, ReferenceError> {
    static BUILT: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
    match BUILT.get_or_init(|| compile().map_err(|e| e.to_string())) {
        Ok(bytes) => Ok(AlignedObject::new(bytes)),
        Err(e) => Err(ReferenceError::Earlier(e.clone())),
    }
}

fn compile() -> Result<Vec<u8>, ReferenceError> {
    let out_dir = workspace().join("target/reference");
    std::fs::create_dir_all(&out_dir).map_err(|err| ReferenceError::Read {
        path: out_dir.display().to_string(),
        err,
    })?;
    let obj = out_dir.join(format!("decap_verify-{}.o", std::process::id()));
    let out = Command::new(CLANG)
        .args(COMPILE_FLAGS)
        // <linux/bpf.h> wants <asm/types.h>, which Debian keeps per arch.
        .arg("-I/usr/include/x86_64-linux-gnu")
        .arg("-c")
        .arg(source())
        .arg("-o")
        .arg(&obj)
        .output()
        .map_err(ReferenceError::Spawn)?;
    if !out.status.success() {
        return Err(ReferenceError::Compile {
            file: source().display().to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    let bytes = std::fs::read(&obj);
    let _ = std::fs::remove_file(&obj);
    bytes.map_err(|err| ReferenceError::Read {
        path: obj.display().to_string(),
        err,
    })
}

/// An ELF object in 8-byte aligned memory.
pub struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    pub fn new(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        for (w, c) in words.iter_mut().zip(bytes.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_ne_bytes(b);
        }
        Self {
            words,
            len: bytes.len(),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and every byte is a valid u8; `len` is
        // at most the words' size in bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

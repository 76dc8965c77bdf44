//! Byte-exact data-plane fixtures, in the style of Katran's BpfTester.
//!
//! Each [`Fixture`] is a table row: an input frame, the XDP action the program
//! must return, the exact output frame, and the counters that must move. The
//! [`FixtureRunner`] feeds rows through `BPF_PROG_TEST_RUN` (aya's `TestRun`)
//! and, on a mismatch, reports input, expected and actual frames as hex with
//! the differing bytes marked, plus a decoded one-line summary of each.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{TestRun, TestRunOptions};

use roamgate::dataplane::{Counters, DataPlane, DataPlaneError};

use crate::frame::describe;

/// XDP actions, as the kernel numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum XdpAction {
    Aborted = 0,
    Drop = 1,
    Pass = 2,
    Tx = 3,
    Redirect = 4,
}

impl XdpAction {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            _ => return None,
        })
    }
}

/// Expected output frame of a fixture.
#[derive(Clone, Debug)]
pub enum Expect {
    /// The program must leave the frame exactly as it came in.
    Unchanged,
    /// The program must produce exactly these bytes.
    Frame(Vec<u8>),
    /// Only the action matters (XDP_DROP: the frame is gone).
    Any,
}

#[derive(Clone, Debug)]
pub struct Fixture {
    pub name: String,
    pub input: Vec<u8>,
    pub action: XdpAction,
    pub output: Expect,
    /// Counters (by name) and how much each must move; unlisted counters are
    /// not checked.
    pub counters: Vec<(&'static str, u64)>,
    /// The interface the frame arrives on (`xdp_md.ingress_ifindex`, an
    /// interface of the caller's network namespace); `None`: the kernel's
    /// default for test runs, loopback.
    pub ingress_ifindex: Option<u32>,
}

impl Fixture {
    pub fn new(name: impl Into<String>, input: Vec<u8>, action: XdpAction) -> Self {
        let output = if action == XdpAction::Drop {
            Expect::Any
        } else {
            Expect::Unchanged
        };
        Self {
            name: name.into(),
            input,
            action,
            output,
            counters: Vec::new(),
            ingress_ifindex: None,
        }
    }

    /// The frame arrives on interface `ifindex`.
    pub fn ingress(mut self, ifindex: u32) -> Self {
        self.ingress_ifindex = Some(ifindex);
        self
    }

    pub fn output(mut self, frame: Vec<u8>) -> Self {
        self.output = Expect::Frame(frame);
        self
    }

    pub fn counter(mut self, name: &'static str, delta: u64) -> Self {
        self.counters.push((name, delta));
        self
    }
}

/// Whether fixtures run against the C reference program
/// (`ROAMGATE_FIXTURE_PROGRAM=reference`). It does only the receiving end's
/// work, so only rows whose input is tunnel data apply to it.
pub fn is_reference() -> bool {
    std::env::var(crate::reference::FIXTURE_PROGRAM_ENV).is_ok_and(|v| v == "reference")
}

/// Whether `frame` is classified as tunnel data (Ethernet, IPv4, UDP to port
/// 434, message type 4), the frames the program's receiving end handles: by
/// the shared parser, which decides "tunnel data at all" first, in the XDP
/// program's order.
pub fn is_tunnel_data(frame: &[u8]) -> bool {
    use roamgate_common::wire::tunnel::{parse, TunnelError};
    frame.get(12..14) == Some(&[0x08, 0x00][..])
        && !matches!(parse(&frame[14..]), Err(TunnelError::NotTunnel))
}

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error(transparent)]
    DataPlane(#[from] DataPlaneError),
    #[error(transparent)]
    Reference(#[from] crate::reference::ReferenceError),
    #[error("BPF_PROG_TEST_RUN failed for {name}: {source}")]
    TestRun {
        name: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("{0}")]
    Mismatch(String),
}

/// Where tests pin their maps: `<this><pid>-<n>[-<tag>]`.
pub const TEST_PIN_PREFIX: &str = "/sys/fs/bpf/roamgate-test-";

static PIN_SEQ: AtomicU32 = AtomicU32::new(0);

/// A test's private bpffs pin directory, removed on drop: when the test
/// ends, fails or panics (unwinding), and when a data plane loaded into it
/// fails halfway (its maps are pinned before the program is verified). A
/// test process that was killed cannot clean up; its directories are swept
/// by the next [`TestPinDir::new`] once its pid no longer exists.
#[derive(Debug)]
pub struct TestPinDir(PathBuf);

impl TestPinDir {
    /// A new, empty directory name (nothing is created until something pins).
    pub fn new(tag: &str) -> Self {
        sweep_stale_test_pins();
        let mut p = format!(
            "{TEST_PIN_PREFIX}{}-{}",
            std::process::id(),
            PIN_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if !tag.is_empty() {
            p.push('-');
            p.push_str(tag);
        }
        let p = PathBuf::from(p);
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestPinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the test pin directories of processes that no longer exist.
fn sweep_stale_test_pins() {
    let prefix = Path::new(TEST_PIN_PREFIX);
    let (Some(dir), Some(stem)) = (prefix.parent(), prefix.file_name()) else {
        return;
    };
    let stem = stem.to_string_lossy();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(stem.as_ref())
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs fixtures against a freshly loaded data plane whose maps are pinned in
/// a private directory, so tests never touch a running gateway's state.
pub struct FixtureRunner {
    // Dropped in this order: the program goes, then its pin directory.
    dp: DataPlane,
    _pin_dir: TestPinDir,
}

impl FixtureRunner {
    /// roamgate's program, or, when `ROAMGATE_FIXTURE_PROGRAM=reference`,
    /// the C reference of its receiving end ([`crate::reference`]), loaded
    /// the same way into the same maps: the fixtures' tunnel-data rows then
    /// check that the reference does the same work ([`is_reference`]).
    pub fn new() -> Result<Self, FixtureError> {
        let pin_dir = TestPinDir::new("");
        let dp = if is_reference() {
            let obj = crate::reference::object()?;
            DataPlane::load_object(obj.bytes(), pin_dir.path())?
        } else {
            DataPlane::load(pin_dir.path())?
        };
        Ok(Self {
            dp,
            _pin_dir: pin_dir,
        })
    }

    pub fn data_plane(&mut self) -> &mut DataPlane {
        &mut self.dp
    }

    /// Runs one frame through the program once; returns (action, output).
    pub fn run_frame(&self, name: &str, input: &[u8]) -> Result<(u32, Vec<u8>), FixtureError> {
        self.run_frame_on(name, input, None)
    }

    /// As [`FixtureRunner::run_frame`], arriving on interface `ifindex`.
    pub fn run_frame_on(
        &self,
        name: &str,
        input: &[u8],
        ifindex: Option<u32>,
    ) -> Result<(u32, Vec<u8>), FixtureError> {
        // Room for encapsulation growth.
        let mut out = vec![0u8; input.len() + 256];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex. The kernel wants data 0 (no
        // metadata) and data_end the frame's length.
        let ctx: Option<Vec<u8>> = ifindex.map(|i| {
            [0, input.len() as u32, 0, i, 0, 0]
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect()
        });
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(input);
        opts.data_out = Some(&mut out);
        opts.ctx_in = ctx.as_deref();
        let res = self
            .dp
            .xdp()?
            .test_run(opts)
            .map_err(|source| FixtureError::TestRun {
                name: name.to_owned(),
                source,
            })?;
        out.truncate(res.data_size_out as usize);
        Ok((res.return_value, out))
    }

    /// Runs one fixture; `Err(Mismatch)` carries the readable report.
    pub fn run(&self, f: &Fixture) -> Result<(), FixtureError> {
        let before = self.dp.counters()?;
        let (ret, out) = self.run_frame_on(&f.name, &f.input, f.ingress_ifindex)?;
        let moved = self.dp.counters()?.delta(&before);
        let mut problems = Vec::new();
        if ret != f.action as u32 {
            problems.push(format!(
                "action: expected {:?}, got {}",
                f.action,
                XdpAction::from_u32(ret)
                    .map(|a| format!("{a:?}"))
                    .unwrap_or_else(|| ret.to_string())
            ));
        }
        let expected = match &f.output {
            Expect::Unchanged => Some(f.input.as_slice()),
            Expect::Frame(e) => Some(e.as_slice()),
            Expect::Any => None,
        };
        if let Some(exp) = expected {
            if exp != out.as_slice() {
                problems.push("output frame differs".to_owned());
            }
        }
        for (name, want) in &f.counters {
            let got = moved.get(name);
            if got != *want {
                problems.push(format!("counter {name}: expected +{want}, got +{got}"));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(FixtureError::Mismatch(report(
            f, expected, &out, &moved, &problems,
        )))
    }

    /// Runs every row and reports all mismatches together. Against the C
    /// reference, only the rows whose input is tunnel data.
    pub fn run_all(&self, fixtures: &[Fixture]) -> Result<(), FixtureError> {
        let mut failures = String::new();
        let reference = is_reference();
        for f in fixtures {
            if reference && !is_tunnel_data(&f.input) {
                eprintln!("reference pass: row {:?} skipped (not tunnel data)", f.name);
                continue;
            }
            match self.run(f) {
                Ok(()) => {}
                Err(FixtureError::Mismatch(r)) => failures.push_str(&r),
                Err(e) => return Err(e),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(FixtureError::Mismatch(failures))
        }
    }
}

fn report(
    f: &Fixture,
    expected: Option<&[u8]>,
    actual: &[u8],
    moved: &Counters,
    problems: &[String],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "=== fixture {:?} failed", f.name);
    for p in problems {
        let _ = writeln!(s, "  - {p}");
    }
    if let Some(i) = f.ingress_ifindex {
        let _ = writeln!(s, "  ingress ifindex: {i}");
    }
    let _ = writeln!(s, "  input:    {}", describe(&f.input));
    if let Some(e) = expected {
        let _ = writeln!(s, "  expected: {}", describe(e));
    }
    let _ = writeln!(s, "  actual:   {}", describe(actual));
    let _ = writeln!(s, "  input bytes:\n{}", hexdump(&f.input, None));
    if let Some(e) = expected {
        let _ = writeln!(s, "  expected bytes:\n{}", hexdump(e, Some(actual)));
        let _ = writeln!(
            s,
            "  actual bytes (^^ marks differences):\n{}",
            hexdump(actual, Some(e))
        );
    }
    let nonzero: Vec<String> = moved
        .0
        .iter()
        .filter(|(_, v)| **v != 0)
        .map(|(k, v)| format!("{k}+{v}"))
        .collect();
    let _ = writeln!(s, "  counters moved: {}", nonzero.join(" "));
    s
}

/// 16 bytes a line; bytes that differ from `other` are marked beneath.
pub fn hexdump(data: &[u8], other: Option<&[u8]>) -> String {
    let mut s = String::new();
    for (line, chunk) in data.chunks(16).enumerate() {
        let off = line * 16;
        let _ = write!(s, "    {off:04x}  ");
        for b in chunk {
            let _ = write!(s, "{b:02x} ");
        }
        s.push('\n');
        if let Some(o) = other {
            let marks: String = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    if o.get(off + i) == Some(b) {
                        "   "
                    } else {
                        "^^ "
                    }
                })
                .collect();
            if marks.contains('^') {
                let _ = writeln!(s, "          {}", marks.trim_end());
            }
        }
    }
    if let Some(o) = other {
        if o.len() > data.len() {
            let _ = writeln!(
                s,
                "    (other frame is {} bytes longer)",
                o.len() - data.len()
            );
        }
    }
    s
}

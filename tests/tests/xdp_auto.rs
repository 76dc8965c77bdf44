//! `xdp_mode = "auto"` on real devices in a namespace: an `ifb` device (no
//! native XDP in its driver; this kernel has no `dummy` module) gets generic
//! XDP, a veth keeps native XDP, and an explicit `native` on the ifb fails
//! naming its driver and the fix.
//!
//! Needs root; run with
//! `cargo test -p roamgate-integration --test xdp_auto`.

use std::process::Command;

use roamgate::dataplane::{AttachMode, AttachedMode, DataPlane};
use roamgate_integration::netns::in_netns;

/// A named namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        sh(&format!("ip netns add {name}"));
        Self(name)
    }

    fn ip(&self, args: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("ip -n {} {args}", self.0))
            .output()
            .expect("ip");
        assert!(out.status.success(), "ip {args}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A pin directory of this helper's own, removed on drop.
struct Pins(std::path::PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "{cmd}");
}

#[test]
fn auto_falls_back_to_skb_on_an_ifb_and_stays_native_on_a_veth() {
    // The fallback's warning shows on stderr.
    roamgate::logging::init(roamgate::config::LogFormat::Text, "warn");
    let ns = Netns::new(format!("ops-xdpauto-{}", std::process::id()));
    ns.ip("link add rgifb0 type ifb");
    ns.ip("link set rgifb0 up");
    ns.ip("link add rgveth0 type veth peer name rgveth1");
    ns.ip("link set rgveth0 up");
    ns.ip("link set rgveth1 up");
    let pins = Pins(format!("/sys/fs/bpf/ops-xdpauto-{}", std::process::id()).into());

    let (explicit, ifb, veth, attached, shown) = in_netns(&ns.0, || {
        let mut dp = DataPlane::load(&pins.0)?;
        let explicit = dp
            .attach("rgifb0", AttachMode::Native)
            .expect_err("an ifb device has no native XDP");
        let ifb = dp.attach("rgifb0", AttachMode::Auto)?;
        let veth = dp.attach("rgveth0", AttachMode::Auto)?;
        let attached: Vec<(String, AttachedMode)> =
            dp.attached().map(|(i, m)| (i.to_owned(), m)).collect();
        // While the data plane (and so its links) is alive.
        let shown = (ns.ip("-d link show rgifb0"), ns.ip("-d link show rgveth0"));
        Ok((explicit.to_string(), ifb, veth, attached, shown))
    })
    .expect("data plane in the namespace");

    eprintln!("explicit native on ifb: {explicit}");
    assert!(
        explicit.contains("xdp_mode = \"auto\"") && explicit.contains("driver ifb"),
        "the native error names the driver and the fix: {explicit}"
    );
    assert_eq!(ifb, AttachedMode::Skb, "ifb falls back to generic XDP");
    assert_eq!(veth, AttachedMode::Native, "veth keeps native XDP");
    assert_eq!(
        attached,
        vec![
            ("rgifb0".to_owned(), AttachedMode::Skb),
            ("rgveth0".to_owned(), AttachedMode::Native)
        ]
    );
    assert!(
        shown.0.contains("xdpgeneric"),
        "ip -d link show rgifb0: {}",
        shown.0
    );
    assert!(
        !shown.1.contains("xdpgeneric") && shown.1.contains("prog/xdp"),
        "ip -d link show rgveth0: {}",
        shown.1
    );
}

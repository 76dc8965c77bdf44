use std::time::Duration;

use roamgate_mip::tunnel_key::MasterKey;

use super::*;

fn master() -> MasterKey {
    MasterKey::new(core::array::from_fn(|i| i as u8))
}

fn live(spec: &TunnelSpec) -> TunnelValue {
    let mut rx = ReplayWindow::default();
    rx.accept(41).unwrap();
    rx.accept(42).unwrap();
    spec.value(17, rx)
}

#[test]
fn reinstalling_an_unchanged_tunnel_writes_nothing() {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let mut spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
    spec.expires = Expiry::AtBoottimeNs(50_000_000_000);
    let old = live(&spec);
    assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
    // The same expiry converted again, a little later or earlier.
    spec.expires = Expiry::AtBoottimeNs(50_000_000_000 + 999_000_000);
    assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
    spec.expires = Expiry::AtBoottimeNs(50_000_000_000 - 999_000_000);
    assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
}

#[test]
fn reinstalling_a_changed_tunnel_keeps_its_counters() {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let mut spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
    spec.expires = Expiry::AtBoottimeNs(50_000_000_000);
    let old = live(&spec);
    let mut later = spec.clone();
    later.expires = Expiry::AtBoottimeNs(52_000_000_000);
    let mut earlier = spec.clone();
    earlier.expires = Expiry::AtBoottimeNs(40_000_000_000);
    let mut smaller = spec.clone();
    smaller.mtu = 1400;
    for changed in [later, earlier, smaller] {
        let Reinstall::Rewrite(v) = reinstall(&old, &changed) else {
            panic!("{changed:?} must be rewritten");
        };
        assert_eq!(v.tx_seq, 17);
        assert_eq!(v.rx, old.rx);
        assert_eq!(v.expires_ns, changed.expires.ns());
        assert_eq!(v.mtu, changed.mtu);
    }
}

#[test]
fn reinstalling_other_keys_or_role_is_a_conflict() {
    let local = Ipv4Addr::new(192, 0, 2, 1);
    let spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
    let old = live(&spec);
    let other_key = TunnelSpec::new(7, Role::HomeAgent, local, H, &MasterKey::new([9; 32]));
    assert_eq!(reinstall(&old, &other_key), Reinstall::Conflict);
    let mut other_role = spec.clone();
    other_role.role = Role::CareOf;
    assert_eq!(reinstall(&old, &other_role), Reinstall::Conflict);
}

const H: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

#[test]
fn secrets_are_redacted() {
    let spec = TunnelSpec::new(
        7,
        Role::CareOf,
        Ipv4Addr::new(1, 2, 3, 4),
        Ipv4Addr::new(5, 6, 7, 8),
        &master(),
    );
    let s = format!("{spec:?}");
    assert!(
        s.contains("redacted") && !s.contains(&format!("{:?}", spec.keys.tx)),
        "{s}"
    );
}

#[test]
fn expiry_encoding() {
    assert_eq!(Expiry::Never.ns(), m::NEVER_EXPIRES);
    let e = Expiry::after_from(Duration::from_secs(10), Duration::from_secs(5));
    assert_eq!(e, Expiry::AtBoottimeNs(15_000_000_000));
    assert_eq!(Expiry::from_ns(e.ns()), e);
    assert_eq!(
        Expiry::after_from(Duration::MAX, Duration::from_secs(1)).ns(),
        m::NEVER_EXPIRES - 1
    );
    assert!(boottime_now() > Duration::ZERO);
}

//! The bpffs pin directory holds the maps with the tunnel keys: it is
//! created 0700, and one that another user owns or may write to is refused
//! before anything is loaded or pinned into it. Needs root.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use roamgate::dataplane::{
    maps::{Capacity, Maps},
    DataPlane,
};
use roamgate_testkit::fixture::TestPinDir;

#[test]
fn pin_dir_is_created_0700() {
    let pin = TestPinDir::new("mode");
    let _dp = DataPlane::load(pin.path()).expect("load data plane (are you root?)");
    let md = std::fs::metadata(pin.path()).unwrap();
    assert_eq!(md.mode() & 0o777, 0o700);
    let pin = TestPinDir::new("mode-maps");
    let _maps = Maps::create_pinned(pin.path(), Capacity::default()).unwrap();
    assert_eq!(std::fs::metadata(pin.path()).unwrap().mode() & 0o777, 0o700);
}

#[test]
fn a_pin_dir_others_control_is_refused_with_the_fix() {
    let pin = TestPinDir::new("foreign");
    std::fs::create_dir(pin.path()).unwrap();
    std::fs::set_permissions(pin.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = DataPlane::load(pin.path())
        .err()
        .expect("a 0777 pin dir is refused")
        .to_string();
    assert!(e.contains("chmod 0700"), "{e}");
    assert_eq!(
        std::fs::read_dir(pin.path()).unwrap().count(),
        0,
        "nothing pinned"
    );

    std::fs::set_permissions(pin.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(pin.path(), Some(65534), Some(65534)).unwrap();
    let e = Maps::create_pinned(pin.path(), Capacity::default())
        .expect_err("a pin dir owned by another uid is refused")
        .to_string();
    assert!(e.contains("owned by uid 65534"), "{e}");
    assert_eq!(
        std::fs::read_dir(pin.path()).unwrap().count(),
        0,
        "nothing pinned"
    );
}

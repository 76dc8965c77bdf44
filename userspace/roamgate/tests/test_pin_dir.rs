//! Test pin directories under bpffs do not outlive their test: not when the
//! test panics, not when the data plane fails to load halfway, and not
//! after the test process was killed. Needs root.

use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData};
use roamgate::dataplane::{maps::TUNNELS, DataPlane};
use roamgate_testkit::fixture::{FixtureRunner, TestPinDir, TEST_PIN_PREFIX};

fn pins_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

#[test]
fn a_panicking_test_leaves_no_pin_directory() {
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let r = std::panic::catch_unwind(move || {
        let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
        let dir = runner.data_plane().pin_dir().to_owned();
        assert!(pins_in(&dir) > 0, "the maps are pinned");
        tx.send(dir).unwrap();
        panic!("the test fails");
    });
    assert!(r.is_err());
    let dir = rx.recv().unwrap();
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_data_plane_that_fails_to_load_leaves_no_pin_directory() {
    let pin = TestPinDir::new("load-fails");
    std::fs::create_dir_all(pin.path()).unwrap();
    // A tunnels map whose values are one byte: the loader reuses the pin,
    // and the verifier refuses the program's accesses to tunnel values.
    HashMap::<MapData, u32, u8>::create(1, 0)
        .unwrap()
        .pin(pin.path().join(TUNNELS))
        .unwrap();
    assert!(DataPlane::load(pin.path()).is_err());
    assert!(
        pins_in(pin.path()) > 1,
        "the loader pinned other maps before it failed"
    );
    let dir = pin.path().to_owned();
    drop(pin);
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn directories_of_killed_test_processes_are_swept() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = PathBuf::from(format!("{TEST_PIN_PREFIX}{dead}-0-killed"));
    std::fs::create_dir_all(&stale).unwrap();
    HashMap::<MapData, u32, u32>::create(1, 0)
        .unwrap()
        .pin(stale.join("m"))
        .unwrap();
    // Ours (alive) stay.
    let mine = TestPinDir::new("alive");
    std::fs::create_dir_all(mine.path()).unwrap();
    let _next = TestPinDir::new("sweeper");
    assert!(!stale.exists(), "{} not swept", stale.display());
    assert!(mine.path().exists());
}

//! The switch-on end-to-end scenario (issue 11) as an integration test: the
//! same code `cargo xtask e2e` runs after the Mobile IP scenario. Needs root
//! (namespaces, XDP).

#[test]
fn switch_on_end_to_end() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let (result, failures) = roamgate_integration::switch_on::run().expect("scenario ran");
    println!("{result}");
    assert!(
        failures.is_empty(),
        "failed expectations: {failures:#?}\n{result}"
    );
}

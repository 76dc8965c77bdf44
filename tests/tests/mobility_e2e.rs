//! The Mobile IP end-to-end scenario (issue 5) as an integration test: the
//! same code `cargo xtask e2e` runs. Needs root (namespaces, XDP).

#[test]
fn mobility_end_to_end() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let (result, failures) = roamgate_integration::mobility::run().expect("scenario ran");
    println!("{result}");
    assert!(
        failures.is_empty(),
        "failed expectations: {failures:#?}\n{result}"
    );
}

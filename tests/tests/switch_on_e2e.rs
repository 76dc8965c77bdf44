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

/// The same flow with MIT krb5kdc as the realm's KDC: every role's
/// `kerberos.kdc` points at it, the units' keys come from `kadmin ktadd`.
#[test]
fn switch_on_with_mit_krb5kdc() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    if roamgate_integration::mit::skip_without(
        &["krb5kdc", "kadmin.local", "kdb5_util"],
        "krb5-kdc krb5-admin-server",
    ) {
        return;
    }
    let (result, failures) = roamgate_integration::switch_on::run_mit().expect("scenario ran");
    println!("{result}");
    assert!(
        failures.is_empty(),
        "failed expectations: {failures:#?}\n{result}"
    );
}

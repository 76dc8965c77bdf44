//! RFC 3961 Appendix A.1, n-fold: every vector.
mod common;
use common::h;
use roamgate_krb_crypto::nfold;

fn check(input: &[u8], bits: usize, expected: &str) {
    assert_eq!(
        hex::encode(nfold(input, bits / 8)),
        expected.replace(' ', "")
    );
}

#[test]
fn nfold_64_012345() {
    check(b"012345", 64, "be072631276b1955");
}
#[test]
fn nfold_56_password() {
    check(b"password", 56, "78a07b6caf85fa");
}
#[test]
fn nfold_64_rough_consensus() {
    check(b"Rough Consensus, and Running Code", 64, "bb6ed30870b7f0e0");
}
#[test]
fn nfold_168_password() {
    check(
        b"password",
        168,
        "59e4a8ca7c0385c3c37b3f6d2000247cb6e6bd5b3e",
    );
}
#[test]
fn nfold_192_mit() {
    check(
        b"MASSACHVSETTS INSTITVTE OF TECHNOLOGY",
        192,
        "db3b0d8f0b061e603282b308a50841229ad798fab9540c1b",
    );
}
#[test]
fn nfold_168_q() {
    check(b"Q", 168, "518a54a215a8452a518a54a215a8452a518a54a215");
}
#[test]
fn nfold_168_ba() {
    check(b"ba", 168, "fb25d531ae8974499f52fd92ea9857c4ba24cf297e");
}
#[test]
fn nfold_64_kerberos() {
    check(b"kerberos", 64, "6b65726265726f73");
}
#[test]
fn nfold_128_kerberos() {
    check(b"kerberos", 128, "6b65726265726f737b9b5b2b93132b93");
}
#[test]
fn nfold_168_kerberos() {
    check(
        b"kerberos",
        168,
        "8372c236344e5f1550cd0747e15d62ca7a5a3bcea4",
    );
}
#[test]
fn nfold_256_kerberos() {
    check(
        b"kerberos",
        256,
        "6b65726265726f737b9b5b2b93132b935c9bdcdad95c9899c4cae4dee6d6cae4",
    );
}
#[test]
fn nfold_degenerate_inputs_do_not_panic() {
    assert_eq!(nfold(b"", 16), vec![0u8; 16]);
    assert!(nfold(b"abc", 0).is_empty());
    let _ = h("00");
}

// Shared by the integration tests (each includes it with `mod common;`).

/// Parses hex as the RFCs print it: pairs separated by spaces and newlines.
pub fn h(s: &str) -> Vec<u8> {
    let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(clean).expect("test vector is valid hex")
}

//! `cargo xtask e2e`: the Mobile IP end-to-end scenario in network
//! namespaces. Prints one JSON object on stdout; exits non-zero if any
//! expectation fails (the failures go to stderr).

fn main() {
    match roamgate_integration::mobility::run() {
        Ok((result, failures)) => {
            println!("{result}");
            if !failures.is_empty() {
                for f in &failures {
                    eprintln!("FAILED: {f}");
                }
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("mobility e2e: {e:#}");
            std::process::exit(2);
        }
    }
}

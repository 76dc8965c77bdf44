//! `cargo xtask demo`: the home gateway, a foreign domain and two units in
//! network namespaces; switch-on, a call with a handover mid-call, the
//! charge, and attacks dropped and counted (see `roamgate_integration::demo`).
//! Progress on stderr; the timeline on stdout, then one JSON line with the
//! figures (`--json`: only the JSON). Exits 1 if a step fails.
//!
//! `demo [--json] [--keep-logs DIR]`

fn main() {
    let mut json = false;
    let mut keep = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--keep-logs" => keep = args.next().map(std::path::PathBuf::from),
            other => {
                eprintln!("demo: unknown argument {other:?} (--json, --keep-logs DIR)");
                std::process::exit(2);
            }
        }
    }
    match roamgate_integration::demo::run(keep.as_deref()) {
        Ok(report) => {
            if !json {
                print!("{}", roamgate_integration::demo::timeline(&report));
            }
            println!("{report}");
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            std::process::exit(1);
        }
    }
}

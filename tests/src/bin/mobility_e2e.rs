//! `cargo xtask e2e`: the end-to-end scenarios in network namespaces, one
//! after the other: Mobile IP (issue 5), then switch-on (issue 11). Prints
//! one JSON object on stdout, the keys of both; exits 1 if any expectation
//! fails (the failures go to stderr), 2 if a scenario could not run.
//!
//! The switch-on flow runs again with MIT krb5kdc as the realm's KDC, under
//! the key `switch_on_mit`.
//!
//! `mobility_e2e mobility|switch-on|switch-on-mit` runs only that one.

use serde_json::Value;

type Scenario = fn() -> anyhow::Result<(Value, Vec<String>)>;

fn switch_on_mit() -> anyhow::Result<(Value, Vec<String>)> {
    let (v, f) = roamgate_integration::switch_on::run_mit()?;
    Ok((serde_json::json!({ "switch_on_mit": v }), f))
}

fn main() {
    let only = std::env::args().nth(1);
    let scenarios: [(&str, Scenario); 3] = [
        ("mobility", roamgate_integration::mobility::run),
        ("switch-on", roamgate_integration::switch_on::run),
        ("switch-on-mit", switch_on_mit),
    ];
    if let Some(o) = &only {
        if !scenarios.iter().any(|(n, _)| n == o) {
            eprintln!("unknown scenario {o:?}: mobility, switch-on or switch-on-mit");
            std::process::exit(2);
        }
    }
    let mut result = serde_json::Map::new();
    let mut failures = Vec::new();
    let mut broken = false;
    for (name, run) in scenarios {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        match run() {
            Ok((Value::Object(r), f)) => {
                result.extend(r);
                failures.extend(f.into_iter().map(|f| format!("{name}: {f}")));
            }
            Ok((other, f)) => {
                result.insert(name.to_owned(), other);
                failures.extend(f.into_iter().map(|f| format!("{name}: {f}")));
            }
            Err(e) => {
                eprintln!("{name} e2e: {e:#}");
                result.insert(format!("{name}_error"), Value::String(format!("{e:#}")));
                broken = true;
            }
        }
    }
    println!("{}", Value::Object(result));
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    if broken {
        std::process::exit(2);
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

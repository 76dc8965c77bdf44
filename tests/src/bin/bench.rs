//! Runs the benchmark sections and writes one JSON object.
//!
//! Usage: roamgate-bench [--json FILE] [--only KEY]...
//!        roamgate-bench --ab A.o,B.o,... (A/B of XDP object builds)

use std::io::Write as _;

use anyhow::{bail, Context as _};
use roamgate_integration::bench::SECTIONS;
use serde_json::{Map, Value};

fn main() -> anyhow::Result<()> {
    let mut json_out = None;
    let mut only = Vec::new();
    let mut ab = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json_out = Some(args.next().context("--json needs a FILE")?),
            "--only" => only.push(args.next().context("--only needs a section key")?),
            "--ab" => ab = Some(args.next().context("--ab needs OBJECT[,OBJECT...]")?),
            "-h" | "--help" => {
                println!("roamgate-bench [--json FILE] [--only KEY]...");
                println!("roamgate-bench [--json FILE] --ab A.o,B.o,...   decap, encap and foreign-pass times of XDP object builds, side by side");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    if let Some(list) = ab {
        let objects: Vec<String> = list.split(',').map(String::from).collect();
        let out = roamgate_integration::bench::dataplane::ab(&objects)?;
        return emit(&out, json_out);
    }
    let mut all = Map::new();
    for (key, run) in SECTIONS {
        let name = if key.is_empty() { "dataplane" } else { key };
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("== bench section {name}");
        let v = run().with_context(|| format!("bench section {name}"))?;
        match (key.is_empty(), v) {
            (true, Value::Object(m)) => all.extend(m),
            (_, v) => {
                all.insert(key.to_string(), v);
            }
        }
    }
    emit(&Value::Object(all), json_out)
}

fn emit(out: &Value, json_out: Option<String>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(out)?;
    println!("{text}");
    if let Some(path) = json_out {
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {path}"))?;
        f.write_all(text.as_bytes())?;
        f.write_all(b"\n")?;
    }
    Ok(())
}

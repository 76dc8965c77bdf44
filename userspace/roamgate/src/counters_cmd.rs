//! `roamgate counters`: reads the pinned per-CPU counters array directly, so it
//! works whether or not the gateway is running.

use std::path::Path;

use anyhow::Context as _;
use aya::maps::{Map, MapData, PerCpuArray};
use roamgate_common::{counters, maps};

pub fn read(pin_dir: &Path) -> anyhow::Result<Vec<(&'static str, u64)>> {
    let path = pin_dir.join(maps::COUNTERS);
    let data = MapData::from_pin(&path).with_context(|| {
        format!(
            "opening {} (has `roamgate gateway` run on this host with this pin_dir?)",
            path.display()
        )
    })?;
    let array: PerCpuArray<_, u64> = PerCpuArray::try_from(Map::PerCpuArray(data))
        .with_context(|| format!("{} is not a per-CPU array", path.display()))?;
    counters::NAMES
        .iter()
        .map(|&(idx, name)| {
            let v = array
                .get(&idx, 0)
                .with_context(|| format!("reading counter {name}"))?;
            Ok((name, v.iter().sum()))
        })
        .collect()
}

pub fn print(pin_dir: &Path, json: bool) -> anyhow::Result<()> {
    let values = read(pin_dir)?;
    if json {
        let body: Vec<String> = values.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        println!("{{{}}}", body.join(","));
    } else {
        for (k, v) in values {
            println!("{k:<24} {v}");
        }
    }
    Ok(())
}

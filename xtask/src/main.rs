//! Project automation: `cargo xtask <command>`. One module per command.

mod apt;
mod build;
mod demo;
mod e2e;
mod fuzz;
mod kernel;
mod run;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, test, run and benchmark roamgate"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install everything the build and the tests need (idempotent; Debian, root;
    /// never removes or downgrades a package; --check only lists).
    Setup(setup::Options),
    /// Build the eBPF object (with BTF) and the `roamgate` binary.
    Build(build::Options),
    /// Lint, unit tests, eBPF fixture tests, namespace integration tests, fuzz smoke.
    Test(test::Options),
    /// Run `roamgate gateway` on this host with config/gateway.toml.
    Run(run::Options),
    /// Run the benchmarks and write their JSON.
    Bench(run::BenchOptions),
    /// The whole system in network namespaces, narrated, in under a minute: home gateway,
    /// foreign domain, two units, a call with a handover, the charge, attacks dropped.
    Demo(demo::Options),
    /// The Mobile IP end-to-end scenario in network namespaces (one JSON line).
    E2e(e2e::Options),
    /// Run the cargo-fuzz targets (nightly + cargo-fuzz, installed on demand).
    Fuzz(fuzz::Options),
    /// The data-plane tests under Debian's Linux 6.1 in qemu (oldest supported kernel).
    Kernel(kernel::Options),
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Setup(o) => setup::run(&o),
        Command::Build(o) => build::run(&o).map(|_| ()),
        Command::Test(o) => test::run(&o),
        Command::Run(o) => run::run(&o),
        Command::Bench(o) => run::bench(&o),
        Command::Fuzz(o) => fuzz::run(&o),
        Command::E2e(o) => e2e::run(&o),
        Command::Demo(o) => demo::run(&o),
        Command::Kernel(o) => kernel::run(&o),
    };
    if let Err(e) = res {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

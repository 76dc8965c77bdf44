//! Home-agent registration throughput: `cargo run --release -p roamgate-mip
//! --example ha_throughput [NODES] [ROUNDS]`. Prints one JSON object.

fn main() {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let r = roamgate_testkit::mip::bench_registrations(nodes, rounds);
    println!(
        "{{\"registrations_per_s\": {:.0}, \"registrations\": {}, \"accepted\": {}}}",
        r.registrations_per_s, r.registrations, r.accepted
    );
    if r.accepted != r.registrations {
        eprintln!("not every registration was accepted");
        std::process::exit(1);
    }
}

//! The fixture harness itself, proven on the first program: rows that must
//! pass, and deliberately wrong rows that the harness must catch and explain.
//! Needs root (BPF_PROG_TEST_RUN).

use std::net::Ipv4Addr;

use roamgate_testkit::{
    fixture::{Fixture, FixtureError, FixtureRunner, XdpAction},
    frame::FrameBuilder,
};

const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn arp() -> Vec<u8> {
    FrameBuilder::new().arp_request(A, B).build()
}

fn udp() -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(A, B)
        .udp(40000, 5060)
        .payload_len(100)
        .build()
}

fn mismatch(r: Result<(), FixtureError>) -> String {
    match r {
        Err(FixtureError::Mismatch(report)) => report,
        other => panic!("expected a mismatch report, got {other:?}"),
    }
}

#[test]
fn foreign_traffic_passes_untouched_and_is_counted() {
    let runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let short = {
        let mut f = udp();
        f.truncate(14 + 12);
        f
    };
    runner
        .run_all(&[
            Fixture::new("arp passes", arp(), XdpAction::Pass)
                .counter("rx_packets", 1)
                .counter("rx_non_ipv4", 1)
                .counter("action_pass", 1)
                .counter("rx_ipv4", 0),
            Fixture::new("ipv4 udp passes", udp(), XdpAction::Pass)
                .counter("rx_packets", 1)
                .counter("rx_bytes", 142)
                .counter("rx_ipv4", 1)
                .counter("action_pass", 1),
            Fixture::new("truncated ipv4 passes to the stack", short, XdpAction::Pass)
                .counter("rx_truncated", 1)
                .counter("rx_ipv4", 0)
                .counter("action_pass", 1),
            // The kernel refuses test frames shorter than Ethernet; an
            // Ethernet header announcing IPv4 and nothing after it is the
            // shortest runt.
            Fixture::new(
                "bare ethernet header passes",
                udp()[..14].to_vec(),
                XdpAction::Pass,
            )
            .counter("rx_truncated", 1),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn harness_catches_a_wrong_action() {
    let runner = FixtureRunner::new().unwrap();
    let report = mismatch(runner.run(&Fixture::new("deliberately wrong", arp(), XdpAction::Drop)));
    assert!(
        report.contains("action: expected Drop, got Pass"),
        "{report}"
    );
    assert!(
        report.contains("fixture \"deliberately wrong\" failed"),
        "{report}"
    );
}

#[test]
fn harness_catches_a_wrong_frame_and_marks_the_bytes() {
    let runner = FixtureRunner::new().unwrap();
    let mut expected = udp();
    expected[14 + 8] -= 1; // as if the TTL had been decremented
    let report =
        mismatch(runner.run(&Fixture::new("ttl", udp(), XdpAction::Pass).output(expected)));
    assert!(report.contains("output frame differs"), "{report}");
    assert!(report.contains("^^"), "{report}");
    assert!(
        report.contains("ttl 63"),
        "decoded expected frame: {report}"
    );
    assert!(report.contains("ttl 64"), "decoded actual frame: {report}");
    assert!(!report.contains("action:"), "{report}");
}

#[test]
fn harness_catches_a_wrong_counter() {
    let runner = FixtureRunner::new().unwrap();
    let report = mismatch(
        runner.run(&Fixture::new("counter", arp(), XdpAction::Pass).counter("rx_ipv4", 1)),
    );
    assert!(
        report.contains("counter rx_ipv4: expected +1, got +0"),
        "{report}"
    );
}

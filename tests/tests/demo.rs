//! `cargo xtask demo` (issue 14): the demo runs, its story holds, its
//! timeline is printed, and it leaves nothing behind. Needs root.

use roamgate_integration::demo;

#[test]
fn the_demo_runs_end_to_end_and_leaves_nothing_behind() {
    let r = demo::run(None).unwrap_or_else(|e| panic!("the demo failed: {e:#}"));
    // Every unit switched on, bob twice (home, then the foreign domain).
    for k in ["alice_home", "bob_home", "bob_foreign"] {
        let ms = r["attach_ms"][k].as_f64().unwrap_or(f64::NAN);
        assert!(ms > 0.0 && ms < 10_000.0, "attach {k}: {r:#}");
    }
    // The call went on across the handover: a short gap, little loss,
    // and the voice crossed the IP network in the tunnel both ways.
    let gap = r["handover_gap_ms"].as_f64().unwrap_or(f64::NAN);
    assert!(gap < 1_000.0, "handover gap {gap} ms: {r:#}");
    let loss = r["loss_pct"].as_f64().unwrap_or(f64::NAN);
    assert!(loss < 5.0, "loss {loss} %: {r:#}");
    for dir in ["to_foreign", "to_home"] {
        assert!(
            r["tunnel_frames_ip_network"][dir].as_u64().unwrap_or(0) >= 50,
            "{r:#}"
        );
    }
    assert_eq!(r["tshark_malformed"], 0, "{r:#}");
    // Charged once, on the tariff the printed commands set (setup fee 10,
    // 2 per second).
    let secs = r["charge"]["seconds"].as_u64().unwrap_or(0);
    assert!(secs >= 5, "{r:#}");
    assert_eq!(r["charge"]["amount"], 10 + 2 * secs, "{r:#}");
    assert_eq!(r["charge"]["account"], "acct-alice", "{r:#}");
    // Each attack dropped and counted where it arrived.
    for k in [
        "forged_dropped",
        "replayed_dropped",
        "registration_replay_rejected",
    ] {
        assert!(r["attacks"][k].as_u64().unwrap_or(0) >= 1, "{k}: {r:#}");
    }
    assert_eq!(r["left_behind"], serde_json::json!([]), "{r:#}");
    assert!(
        r["elapsed_s"].as_f64().unwrap_or(f64::NAN) < 60.0,
        "under a minute: {r:#}"
    );
    let t = demo::timeline(&r);
    for want in [
        "attach (switch-on)",
        "call setup",
        "handover gap",
        "loss",
        "charge",
        "attacks",
        "left behind: nothing",
    ] {
        assert!(t.contains(want), "{want:?} missing from:\n{t}");
    }
}

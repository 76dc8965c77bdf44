//! Our G.711 against CPython's `audioop` (the Sun reference code CPython
//! carries), for every 16-bit sample and every code.

use std::process::Command;

use roamgate_call::media::g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode};

fn python() -> &'static str {
    // Debian's python3 has audioop (3.11, deprecated only from 3.13).
    if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn audioop(script: &str) -> Vec<u8> {
    let out = Command::new(python())
        .args(["-W", "ignore", "-c", script])
        .output()
        .expect("python3 runs (install it with `cargo xtask setup`)");
    assert!(
        out.status.success(),
        "python3 audioop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

const ALL_SAMPLES: &str = "import audioop,sys,struct\n\
    pcm=struct.pack('<65536h',*range(-32768,32768))\n";

#[test]
fn encoding_matches_audioop_for_every_sample() {
    let mu = audioop(&format!(
        "{ALL_SAMPLES}sys.stdout.buffer.write(audioop.lin2ulaw(pcm,2))"
    ));
    let a = audioop(&format!(
        "{ALL_SAMPLES}sys.stdout.buffer.write(audioop.lin2alaw(pcm,2))"
    ));
    assert_eq!((mu.len(), a.len()), (65536, 65536));
    for (i, s) in (i16::MIN..=i16::MAX).enumerate() {
        assert_eq!(ulaw_encode(s), mu[i], "µ-law of {s}");
        assert_eq!(alaw_encode(s), a[i], "A-law of {s}");
    }
}

#[test]
fn decoding_matches_audioop_for_every_code() {
    let script = "import audioop,sys\ncodes=bytes(range(256))\n\
        sys.stdout.buffer.write(audioop.ulaw2lin(codes,2)+audioop.alaw2lin(codes,2))";
    let out = audioop(script);
    assert_eq!(out.len(), 1024);
    for c in 0..=255u8 {
        let i = usize::from(c) * 2;
        let mu = i16::from_le_bytes([out[i], out[i + 1]]);
        let a = i16::from_le_bytes([out[512 + i], out[512 + i + 1]]);
        assert_eq!(ulaw_decode(c), mu, "µ-law code {c:#x}");
        assert_eq!(alaw_decode(c), a, "A-law code {c:#x}");
    }
}

//! SRTP protect and unprotect rates per core (issue 12, "Performance"):
//! roamgate-srtp, libsrtp (a small C harness, tests/c/srtp_libsrtp_bench.c,
//! built here with Debian's libsrtp2-dev) and ring's raw AES-128-GCM seal
//! (the ceiling for the GCM profile), side by side in one run. The work is
//! the same everywhere: a 12-byte RTP header and a 160-byte G.711 payload,
//! one SSRC, sequence numbers in order, every packet protected into its own
//! buffer first and then unprotected, each phase timed alone.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use roamgate_srtp::{Context, MasterKey, MasterSalt, Profile, MAX_TRAILER_LEN};
use serde_json::json;

const HDR: usize = 12;
const PAYLOAD: usize = 160;
const SLOT: usize = HDR + PAYLOAD + MAX_TRAILER_LEN;
/// Packets per measurement (at 20 ms a packet, about 67 call-minutes).
const PACKETS: usize = 200_000;
/// Runs of each measurement; the best is reported (noise on 2 cores
/// only slows a run down).
const RUNS: usize = 3;

fn packets(n: usize) -> Vec<u8> {
    let mut buf = vec![0xd5u8; n * SLOT];
    for i in 0..n {
        let p = &mut buf[i * SLOT..];
        p[0] = 0x80;
        p[1] = 0;
        p[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        p[4..8].copy_from_slice(&((i as u32).wrapping_mul(160)).to_be_bytes());
        p[8..12].copy_from_slice(&0x5eed_0001u32.to_be_bytes());
    }
    buf
}

/// (protect, unprotect) packets per second with roamgate-srtp.
fn roamgate(profile: Profile) -> Result<(f64, f64)> {
    let key = MasterKey::new(core::array::from_fn(|i| (i * 7 + 1) as u8));
    let salt_bytes: Vec<u8> = (16..16 + profile.master_salt_len())
        .map(|i| (i * 7 + 1) as u8)
        .collect();
    let salt = MasterSalt::from_slice(&salt_bytes)?;
    let mut tx = Context::new(profile, &key, &salt)?;
    let mut rx = Context::new(profile, &key, &salt)?;
    let mut buf = packets(PACKETS);
    let mut lens = vec![0usize; PACKETS];
    let t0 = Instant::now();
    for (i, len) in lens.iter_mut().enumerate() {
        *len = tx.protect_rtp_in_place(&mut buf[i * SLOT..(i + 1) * SLOT], HDR + PAYLOAD)?;
    }
    let protect = t0.elapsed();
    let t1 = Instant::now();
    for (i, len) in lens.iter().enumerate() {
        let n = rx.unprotect_rtp_in_place(&mut buf[i * SLOT..i * SLOT + len])?;
        if n != HDR + PAYLOAD {
            bail!("unprotect gave {n} bytes");
        }
    }
    let unprotect = t1.elapsed();
    Ok((
        PACKETS as f64 / protect.as_secs_f64(),
        PACKETS as f64 / unprotect.as_secs_f64(),
    ))
}

/// ring's AES-128-GCM seal of the same payload with the header as AAD:
/// what the GCM profile costs with no SRTP around it.
fn ring_seal() -> Result<f64> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, &[0x42; 16]).map_err(|_| anyhow::anyhow!("ring key"))?,
    );
    let mut buf = packets(PACKETS);
    let t0 = Instant::now();
    for i in 0..PACKETS {
        let p = &mut buf[i * SLOT..i * SLOT + HDR + PAYLOAD];
        let (hdr, payload) = p.split_at_mut(HDR);
        let mut iv = [0u8; 12];
        iv[8..].copy_from_slice(&(i as u32).to_be_bytes());
        let tag = key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(&*hdr), payload)
            .map_err(|_| anyhow::anyhow!("ring seal"))?;
        let _ = std::hint::black_box(tag);
    }
    Ok(PACKETS as f64 / t0.elapsed().as_secs_f64())
}

/// Builds the libsrtp harness into target/bench/.
fn libsrtp_harness() -> Result<PathBuf> {
    let root = crate::netns::root();
    let src = root.join("tests/c/srtp_libsrtp_bench.c");
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let bin = dir.join("srtp_libsrtp_bench");
    let out = Command::new("gcc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .arg("-lsrtp2")
        .output()
        .context("running gcc")?;
    if !out.status.success() {
        bail!(
            "building {} failed (is libsrtp2-dev installed? `cargo xtask setup` installs it): {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(bin)
}

/// (protect, unprotect) packets per second with libsrtp.
fn libsrtp(bin: &PathBuf, profile: &str) -> Result<(f64, f64)> {
    let out = Command::new(bin)
        .args([profile, &PACKETS.to_string()])
        .output()
        .context("running the libsrtp harness")?;
    if !out.status.success() {
        bail!("libsrtp harness: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let get = |k: &str| v[k].as_f64().with_context(|| format!("{k} in {v}"));
    Ok((get("protect_pps")?, get("unprotect_pps")?))
}

fn best<F: FnMut() -> Result<(f64, f64)>>(mut f: F) -> Result<(f64, f64)> {
    let mut b = (0f64, 0f64);
    for _ in 0..RUNS {
        let (p, u) = f()?;
        b = (b.0.max(p), b.1.max(u));
    }
    Ok(b)
}

pub fn run() -> Result<serde_json::Value> {
    let bin = libsrtp_harness()?;
    let mut out = serde_json::Map::new();
    let mut seal = 0f64;
    for _ in 0..RUNS {
        seal = seal.max(ring_seal()?);
    }
    for (name, profile, lib) in [
        (
            "aes_cm_128_hmac_sha1_80",
            Profile::AesCm128HmacSha1_80,
            "cm",
        ),
        ("aead_aes_128_gcm", Profile::AeadAes128Gcm, "gcm"),
    ] {
        let (rp, ru) = best(|| roamgate(profile))?;
        let (lp, lu) = best(|| libsrtp(&bin, lib))?;
        out.insert(
            name.into(),
            json!({
                "roamgate_protect_pps": rp.round(),
                "roamgate_unprotect_pps": ru.round(),
                "libsrtp_protect_pps": lp.round(),
                "libsrtp_unprotect_pps": lu.round(),
                "ratio_protect_over_libsrtp": rp / lp,
                "ratio_unprotect_over_libsrtp": ru / lu,
            }),
        );
        if profile == Profile::AeadAes128Gcm {
            out.insert("ring_gcm_seal_pps".into(), json!(seal.round()));
            out.insert("ratio_gcm_protect_over_ring_seal".into(), json!(rp / seal));
        }
    }
    let g = |k: &str, f: &str| out[k][f].as_f64().unwrap_or(0.0);
    let faster = ["aes_cm_128_hmac_sha1_80", "aead_aes_128_gcm"]
        .iter()
        .all(|k| {
            g(k, "ratio_protect_over_libsrtp") > 1.0 && g(k, "ratio_unprotect_over_libsrtp") > 1.0
        });
    let half = out["ratio_gcm_protect_over_ring_seal"]
        .as_f64()
        .unwrap_or(0.0)
        >= 0.5;
    let goals = json!({
        "gcm_protect_at_least_half_of_ring_seal": half,
        "faster_than_libsrtp_both_profiles": faster,
    });
    out.insert("goals".into(), goals);
    out.insert(
        "method".into(),
        json!(format!("{PACKETS} packets (12-byte header, 160-byte payload, one SSRC) protected each into its own buffer, then unprotected; best of {RUNS} runs; one thread; libsrtp through tests/c/srtp_libsrtp_bench.c (gcc -O2, Debian libsrtp2)")),
    );
    Ok(serde_json::Value::Object(out))
}

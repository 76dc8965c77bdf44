//! Call setup and teardown rate (issue 12): 1,000 whole calls over real
//! sockets, one after the other and then 20 in flight, beside a bare TCP
//! baseline in the same run.
//!
//! Each call does what a call's ends do:
//! - the caller's proxy holds one TGT (AS exchange with pre-authentication
//!   at the start) and, per call, asks the roamgate KDC (in this process,
//!   UDP on 127.0.0.1) for a ticket for the callee's call principal
//!   `call/unit2` (`with_tgs`), or reuses one ticket (`cached_ticket`);
//! - `Call::dial`, the SETUP encoded (`signalling::encode`: TPKT, Q.931,
//!   H.225.0 in aligned PER, the H.235.1 hashed token) and sent on a new
//!   loopback TCP connection (one per call, as H.225.0 does);
//! - the callee decodes it and answers with `Call::answer_setup` (the
//!   AP-REQ checked against its keytab and one replay cache shared by every
//!   call), sends CALL PROCEEDING (with the AP-REP) and ALERTING, then
//!   `accept` and CONNECT; the caller processes each to Connected;
//! - both ends build their `MediaSession` (the SRTP key derivation);
//! - the caller hangs up (RELEASE COMPLETE), the callee processes it and
//!   closes the connection; the caller sees the close.
//!
//! The baseline (`plain_tcp`) opens the same connections and exchanges
//! the same messages in the same order with the same sizes, pre-encoded
//! bytes with no crypto and no ASN.1.
//!
//! `setup_ms`: from the call's start (the TGS-REQ in `with_tgs`, else
//! `Call::dial`; the connect in `plain_tcp`) to the caller having
//! processed CONNECT. `teardown_ms`: from the caller's hang-up to the
//! callee's close after it processed RELEASE COMPLETE. `setup_per_s`:
//! calls set up and torn down per second of wall clock.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context as _, Result};
use roamgate_call::call::{cause, Call, Channel, Event};
use roamgate_call::handshake::CallId;
use roamgate_call::media::g711::Law;
use roamgate_call::media::session::MediaSession;
use roamgate_call::signalling::{self, Ends};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::keytab::Keytab;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use roamgate_srtp::Profile;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;

use super::kdc::{Mode, RoamgateKdc, RoamgateKdcOptions};

/// Calls per measurement.
const CALLS: usize = 1_000;
/// Calls in flight at once in the concurrent measurement.
const IN_FLIGHT: usize = 20;
/// Calls of each kind before the measurements (not counted).
const WARMUP: usize = 20;
const REALM: &str = "ROAMGATE.TEST";
const CALLER: &str = "unit1";
const CALLER_PASSWORD: &str = "bench-unit1-password";
const CALLEE: &str = "call/unit2";
const NUMBER: &str = "4940123456";
const CALLING_NUMBER: &str = "4940111";
const PROFILE: Profile = Profile::AesCm128HmacSha1_80;
const KDC_TIMEOUT: Duration = Duration::from_secs(2);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    /// A TGS exchange per call, then the call.
    WithTgs,
    /// The call with one ticket reused.
    CachedTicket,
    /// The same TCP messages, pre-encoded, no crypto.
    PlainTcp,
}

impl Variant {
    fn key(self) -> &'static str {
        match self {
            Self::WithTgs => "with_tgs",
            Self::CachedTicket => "cached_ticket",
            Self::PlainTcp => "plain_tcp",
        }
    }
}

/// The sizes of the five messages of a call, in the order they go:
/// SETUP, CALL PROCEEDING, ALERTING, CONNECT, RELEASE COMPLETE.
type Sizes = [usize; 5];

/// The caller's proxy: the KDC, its TGT and a ticket to reuse.
struct CallerSide {
    kdc: SocketAddr,
    tgt: Credential,
    callee: Principal,
    cached: Credential,
    ends: Ends,
}

/// The callee: its call principal's keys and the one replay cache.
struct CalleeSide {
    principal: Principal,
    keys: Keytab,
    replay: Mutex<ReplayCache>,
    ends: Ends,
    errors: AtomicU64,
}

/// One call's figures.
struct CallTimes {
    setup: Duration,
    teardown: Duration,
    tgs: Option<Duration>,
    sizes: Sizes,
}

fn offer() -> Vec<Channel> {
    vec![
        Channel {
            law: Law::Mu,
            rtp: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000),
        },
        Channel {
            law: Law::A,
            rtp: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_000),
        },
    ]
}

fn callee_channels() -> [Channel; 1] {
    [Channel {
        law: Law::Mu,
        rtp: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40_002),
    }]
}

fn call_id(run: u32, index: u32) -> CallId {
    let mut id = [0x5a; 16];
    id[..4].copy_from_slice(&run.to_be_bytes());
    id[4..8].copy_from_slice(&index.to_be_bytes());
    id
}

/// Reads one TPKT; `None` when the peer closed the connection.
async fn read_tpkt(s: &mut TcpStream) -> Result<Option<Vec<u8>>> {
    let mut hdr = [0u8; 4];
    match tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut hdr)).await? {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    if hdr[0] != 3 || len < hdr.len() {
        bail!("not a TPKT: {hdr:02x?}");
    }
    let mut buf = vec![0u8; len];
    buf[..4].copy_from_slice(&hdr);
    tokio::time::timeout(IO_TIMEOUT, s.read_exact(&mut buf[4..])).await??;
    Ok(Some(buf))
}

/// A TPKT of `len` bytes with a zero payload: the baseline's message.
fn plain_message(len: usize) -> Vec<u8> {
    let mut m = vec![0u8; len];
    m[0] = 3;
    m[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    m
}

async fn kdc_roundtrip(udp: &UdpSocket, req: &[u8], buf: &mut [u8]) -> Result<usize> {
    udp.send(req).await?;
    Ok(tokio::time::timeout(KDC_TIMEOUT, udp.recv(buf))
        .await
        .context("the KDC did not answer in time")??)
}

/// The caller's TGT: AS-REQ, PREAUTH_REQUIRED, AS-REQ with PA-ENC-TIMESTAMP.
async fn get_tgt(kdc: SocketAddr, client: &Principal) -> Result<Credential> {
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    udp.connect(kdc).await?;
    let mut buf = vec![0u8; 65_536];
    let mut ex = AsExchange::new(
        client.clone(),
        ClientSecret::password(CALLER_PASSWORD),
        AsOptions::default(),
    )?;
    let mut req = ex.first_request(SystemTime::now())?;
    loop {
        let n = kdc_roundtrip(&udp, &req, &mut buf).await?;
        match ex.handle_reply(&buf[..n], SystemTime::now())? {
            AsStep::Send(next) => req = next,
            AsStep::Done(c) => return Ok(*c),
        }
    }
}

/// A ticket for the callee's call principal under the TGT.
async fn get_ticket(c: &CallerSide, udp: &UdpSocket, buf: &mut [u8]) -> Result<Credential> {
    let ex = TgsExchange::new(&c.tgt, c.callee.clone(), 0)?;
    let req = ex.request(SystemTime::now())?;
    let n = kdc_roundtrip(udp, &req, buf).await?;
    Ok(ex.handle_reply(&buf[..n])?)
}

/// The caller's side of one whole call.
async fn place(
    c: &CallerSide,
    variant: Variant,
    addr: SocketAddr,
    udp: &UdpSocket,
    buf: &mut [u8],
    run: u32,
    index: u32,
) -> Result<CallTimes> {
    let mut sizes = [0usize; 5];
    let t0 = Instant::now();
    let fresh;
    let (ticket, tgs) = match variant {
        Variant::WithTgs => {
            fresh = get_ticket(c, udp, buf).await.context("TGS exchange")?;
            (&fresh, Some(t0.elapsed()))
        }
        _ => (&c.cached, None),
    };
    let call_reference = (index & 0x7fff) as u16;
    let (mut call, setup) = Call::dial(
        ticket,
        call_id(run, index),
        NUMBER,
        Some(CALLING_NUMBER),
        offer(),
        SystemTime::now(),
    )?;
    let bytes = signalling::encode(
        &setup.signal,
        call_reference,
        false,
        setup.key.as_ref(),
        &c.ends,
    )?;
    sizes[0] = bytes.len();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&bytes).await?;
    let mut got = 1;
    let (channel, remote) = loop {
        let b = read_tpkt(&mut s)
            .await?
            .context("the callee closed before CONNECT")?;
        if let Some(slot) = sizes.get_mut(got) {
            *slot = b.len();
        }
        got += 1;
        let r = signalling::decode(&b)?;
        let ev = call
            .on_signal(&r.signal, &|k| r.verify(k), SystemTime::now())
            .map_err(|e| anyhow!("the caller dropped {:?}: {e}", r.signal.kind))?;
        match ev {
            Some(Event::Connected { channel, remote }) => break (channel, remote),
            Some(Event::Released { cause, .. }) => bail!("released before CONNECT, cause {cause}"),
            _ => {}
        }
    };
    let setup_time = t0.elapsed();
    if got != 4 {
        bail!("{} messages before CONNECT, expected 3", got - 1);
    }
    let keys = call.keys().context("connected without keys")?;
    let media = MediaSession::new(keys, PROFILE, channel.law, remote.rtp, index, 1, 0)
        .map_err(|e| anyhow!("caller media: {e}"))?;
    std::hint::black_box(&media);

    let t1 = Instant::now();
    let (release, _) = call
        .hang_up(cause::NORMAL_CLEARING, SystemTime::now())
        .context("hang up")?;
    let bytes = signalling::encode(
        &release.signal,
        call_reference,
        false,
        release.key.as_ref(),
        &c.ends,
    )?;
    sizes[4] = bytes.len();
    s.write_all(&bytes).await?;
    if read_tpkt(&mut s).await?.is_some() {
        bail!("a message after RELEASE COMPLETE");
    }
    Ok(CallTimes {
        setup: setup_time,
        teardown: t1.elapsed(),
        tgs,
        sizes,
    })
}

/// The baseline caller: the same messages, pre-encoded.
async fn place_plain(addr: SocketAddr, msgs: &[Vec<u8>; 5]) -> Result<CallTimes> {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&msgs[0]).await?;
    for want in &msgs[1..4] {
        let b = read_tpkt(&mut s).await?.context("closed early")?;
        if b.len() != want.len() {
            bail!("{} bytes, expected {}", b.len(), want.len());
        }
    }
    let setup = t0.elapsed();
    let t1 = Instant::now();
    s.write_all(&msgs[4]).await?;
    if read_tpkt(&mut s).await?.is_some() {
        bail!("a message after RELEASE COMPLETE");
    }
    Ok(CallTimes {
        setup,
        teardown: t1.elapsed(),
        tgs: None,
        sizes: [0; 5],
    })
}

/// The callee's side of one call on an accepted connection.
async fn answer(mut s: TcpStream, c: &CalleeSide, index: u32) -> Result<()> {
    s.set_nodelay(true)?;
    let bytes = read_tpkt(&mut s).await?.context("no SETUP")?;
    let got = signalling::decode(&bytes)?;
    let (mut call, answers) = {
        let mut replay = c
            .replay
            .lock()
            .map_err(|_| anyhow!("replay cache poisoned"))?;
        Call::answer_setup(
            &got.signal,
            &|k| got.verify(k),
            &c.keys,
            &c.principal,
            NUMBER,
            &callee_channels(),
            &mut replay,
            SystemTime::now(),
        )
    }
    .map_err(|r| anyhow!("SETUP refused: {}", r.error))?;
    for a in &answers {
        let b = signalling::encode(&a.signal, got.call_reference, true, a.key.as_ref(), &c.ends)?;
        s.write_all(&b).await?;
    }
    let (connect, ev) = call.accept(SystemTime::now()).context("accept")?;
    let b = signalling::encode(
        &connect.signal,
        got.call_reference,
        true,
        connect.key.as_ref(),
        &c.ends,
    )?;
    s.write_all(&b).await?;
    let Event::Connected { channel, remote } = ev else {
        bail!("accept gave {ev:?}");
    };
    let keys = call.keys().context("connected without keys")?;
    let media = MediaSession::new(keys, PROFILE, channel.law, remote.rtp, !index, 1, 0)
        .map_err(|e| anyhow!("callee media: {e}"))?;
    std::hint::black_box(&media);

    let bytes = read_tpkt(&mut s).await?.context("no RELEASE COMPLETE")?;
    let r = signalling::decode(&bytes)?;
    match call.on_signal(&r.signal, &|k| r.verify(k), SystemTime::now()) {
        Ok(Some(Event::Released { by_peer: true, .. })) => Ok(()),
        other => bail!("RELEASE COMPLETE gave {other:?}"),
    }
    // Dropping the stream closes the connection.
}

/// The baseline callee.
async fn answer_plain(mut s: TcpStream, msgs: &[Vec<u8>; 5]) -> Result<()> {
    s.set_nodelay(true)?;
    read_tpkt(&mut s).await?.context("no SETUP")?;
    for m in &msgs[1..4] {
        s.write_all(m).await?;
    }
    read_tpkt(&mut s).await?.context("no RELEASE COMPLETE")?;
    Ok(())
}

/// Accepts connections and answers each on its own task until aborted.
async fn serve(listener: TcpListener, callee: Arc<CalleeSide>, plain: Option<Arc<[Vec<u8>; 5]>>) {
    let mut tasks = JoinSet::new();
    let mut index: u32 = 0;
    loop {
        let s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("call_setup: accept: {e}");
                callee.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        index = index.wrapping_add(1);
        let callee = Arc::clone(&callee);
        let plain = plain.clone();
        tasks.spawn(async move {
            let r = match &plain {
                Some(msgs) => answer_plain(s, msgs).await,
                None => answer(s, &callee, index).await,
            };
            if let Err(e) = r {
                eprintln!("call_setup: callee: {e:#}");
                callee.errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        // Reap finished tasks so that the set stays small.
        while tasks.try_join_next().is_some() {}
    }
}

/// One measurement's figures.
struct Measured {
    wall: Duration,
    setup_us: Vec<u64>,
    teardown_us: Vec<u64>,
    tgs_us: Vec<u64>,
    sizes: Sizes,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `calls` calls of `variant`, `in_flight` at a time, against a fresh
/// callee listener.
async fn measure(
    variant: Variant,
    calls: usize,
    in_flight: usize,
    run: u32,
    caller: &Arc<CallerSide>,
    callee: &Arc<CalleeSide>,
    plain: Option<Arc<[Vec<u8>; 5]>>,
) -> Result<Measured> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve(listener, Arc::clone(callee), plain.clone()));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..in_flight {
        let caller = Arc::clone(caller);
        let next = Arc::clone(&next);
        let plain = plain.clone();
        workers.spawn(async move {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            udp.connect(caller.kdc).await?;
            let mut buf = vec![0u8; 65_536];
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    break;
                }
                let t = match &plain {
                    Some(msgs) => place_plain(addr, msgs).await,
                    None => place(&caller, variant, addr, &udp, &mut buf, run, i as u32).await,
                }
                .with_context(|| format!("{} call {i}", variant.key()))?;
                out.push(t);
            }
            anyhow::Ok(out)
        });
    }
    let mut all = Vec::with_capacity(calls);
    let mut failed = None;
    while let Some(r) = workers.join_next().await {
        match r.map_err(anyhow::Error::from).and_then(|r| r) {
            Ok(v) => all.extend(v),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    let wall = start.elapsed();
    server.abort();
    let _ = server.await;
    if let Some(e) = failed {
        return Err(e);
    }
    if all.len() != calls {
        bail!("{} of {calls} calls completed", all.len());
    }
    let mut m = Measured {
        wall,
        setup_us: all.iter().map(|t| micros(t.setup)).collect(),
        teardown_us: all.iter().map(|t| micros(t.teardown)).collect(),
        tgs_us: all.iter().filter_map(|t| t.tgs.map(micros)).collect(),
        sizes: all.first().map(|t| t.sizes).unwrap_or_default(),
    };
    m.setup_us.sort_unstable();
    m.teardown_us.sort_unstable();
    m.tgs_us.sort_unstable();
    Ok(m)
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn figures(m: &Measured) -> Value {
    let mut v = json!({
        "calls": m.setup_us.len(),
        "setup_per_s": r2(m.setup_us.len() as f64 / m.wall.as_secs_f64()),
        "setup_ms_p50": r3(percentile_ms(&m.setup_us, 0.50)),
        "setup_ms_p99": r3(percentile_ms(&m.setup_us, 0.99)),
        "teardown_ms_p50": r3(percentile_ms(&m.teardown_us, 0.50)),
        "wall_s": r3(m.wall.as_secs_f64()),
    });
    if !m.tgs_us.is_empty() {
        v["tgs_ms_p50"] = json!(r3(percentile_ms(&m.tgs_us, 0.50)));
        v["tgs_ms_p99"] = json!(r3(percentile_ms(&m.tgs_us, 0.99)));
    }
    v
}

/// The three variants at one concurrency, side by side.
async fn mode(
    in_flight: usize,
    run: &mut u32,
    caller: &Arc<CallerSide>,
    callee: &Arc<CalleeSide>,
    plain: &Arc<[Vec<u8>; 5]>,
) -> Result<Value> {
    let mut out = serde_json::Map::new();
    let mut results = Vec::new();
    for variant in [Variant::PlainTcp, Variant::WithTgs, Variant::CachedTicket] {
        *run += 1;
        let p = (variant == Variant::PlainTcp).then(|| Arc::clone(plain));
        eprintln!(
            "   call_setup: {} x {CALLS}, {in_flight} in flight",
            variant.key()
        );
        let m = measure(variant, CALLS, in_flight, *run, caller, callee, p).await?;
        out.insert(variant.key().to_owned(), figures(&m));
        results.push((variant, m));
    }
    let plain_m = &results[0].1;
    let plain_p50 = percentile_ms(&plain_m.setup_us, 0.50);
    let plain_rate = plain_m.setup_us.len() as f64 / plain_m.wall.as_secs_f64();
    let mut ratio = serde_json::Map::new();
    let mut rate_ratio = serde_json::Map::new();
    for (variant, m) in &results[1..] {
        ratio.insert(
            variant.key().to_owned(),
            json!(r2(percentile_ms(&m.setup_us, 0.50) / plain_p50)),
        );
        rate_ratio.insert(
            variant.key().to_owned(),
            json!(r2(
                plain_rate / (m.setup_us.len() as f64 / m.wall.as_secs_f64())
            )),
        );
    }
    out.insert(
        "ratio_setup_over_plain_tcp".to_owned(),
        Value::Object(ratio),
    );
    out.insert(
        "ratio_rate_plain_tcp_over_call".to_owned(),
        Value::Object(rate_ratio),
    );
    out.insert("in_flight".to_owned(), json!(in_flight));
    Ok(Value::Object(out))
}

/// The benchmark section `call_setup`.
pub fn run() -> Result<Value> {
    let b = RoamgateKdc::create(&RoamgateKdcOptions {
        realm: REALM.to_owned(),
        mode: Some(Mode::InProcess),
        threads: 1,
        ..RoamgateKdcOptions::default()
    })?;
    b.add_password(CALLER, CALLER_PASSWORD, &[])?
        .add_random(CALLEE)?;
    let keytab_path = b.dir().join("call-unit2.keytab");
    b.export_keytab(CALLEE, &keytab_path)?;
    let kdc = b.start()?;
    let keys = Keytab::load(&keytab_path).context("loading the callee's keytab")?;

    let client = Principal::parse_with_realm(CALLER, REALM)?;
    let callee_p = Principal::parse_with_realm(CALLEE, REALM)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("call-bench")
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let tgt = get_tgt(kdc.addr, &client)
            .await
            .context("the caller's TGT")?;
        let udp = UdpSocket::bind("127.0.0.1:0").await?;
        udp.connect(kdc.addr).await?;
        let mut buf = vec![0u8; 65_536];
        let ex = TgsExchange::new(&tgt, callee_p.clone(), 0)?;
        let n = kdc_roundtrip(&udp, &ex.request(SystemTime::now())?, &mut buf).await?;
        let cached = ex.handle_reply(&buf[..n]).context("the cached ticket")?;
        let caller = Arc::new(CallerSide {
            kdc: kdc.addr,
            tgt,
            callee: callee_p.clone(),
            cached,
            ends: Ends {
                sender: client.to_string(),
                receiver: callee_p.to_string(),
            },
        });
        let callee = Arc::new(CalleeSide {
            principal: callee_p.clone(),
            keys,
            replay: Mutex::new(ReplayCache::default()),
            ends: Ends {
                sender: callee_p.to_string(),
                receiver: client.to_string(),
            },
            errors: AtomicU64::new(0),
        });

        // Warm-up, and the message sizes for the baseline.
        let mut run = 0u32;
        measure(Variant::WithTgs, WARMUP, 1, run, &caller, &callee, None).await?;
        run += 1;
        let warm = measure(Variant::CachedTicket, WARMUP, 1, run, &caller, &callee, None).await?;
        let sizes = warm.sizes;
        let plain: Arc<[Vec<u8>; 5]> = Arc::new(sizes.map(plain_message));
        measure(Variant::PlainTcp, WARMUP, 1, run, &caller, &callee, Some(Arc::clone(&plain)))
            .await?;

        let sequential = mode(1, &mut run, &caller, &callee, &plain).await?;
        let concurrent = mode(IN_FLIGHT, &mut run, &caller, &callee, &plain).await?;
        anyhow::Ok(json!({
            "calls": CALLS,
            "sequential": sequential,
            "concurrent": concurrent,
            "message_bytes": {
                "setup": sizes[0],
                "call_proceeding": sizes[1],
                "alerting": sizes[2],
                "connect": sizes[3],
                "release_complete": sizes[4],
            },
            "replay_cache_entries": callee.replay.lock().map(|r| r.len()).unwrap_or(0),
            "callee_errors": callee.errors.load(Ordering::Relaxed),
            "kdc": "roamgate KDC in process, UDP 127.0.0.1, 1 thread",
            "ticket_etype": caller.cached.session_key.etype().to_i32(),
            "srtp_profile": "AES_CM_128_HMAC_SHA1_80",
            "setup_ms": "call start (TGS-REQ in with_tgs, Call::dial in cached_ticket, TCP connect in plain_tcp) to CONNECT processed by the caller",
            "teardown_ms": "caller's hang-up to the callee's close after it processed RELEASE COMPLETE",
            "setup_per_s": "calls set up and torn down per second of wall clock",
            "ratio_setup_over_plain_tcp": "setup_ms_p50 of the call over that of plain_tcp",
            "ratio_rate_plain_tcp_over_call": "setup_per_s of plain_tcp over that of the call",
        }))
    })?;
    drop(kdc);
    Ok(out)
}

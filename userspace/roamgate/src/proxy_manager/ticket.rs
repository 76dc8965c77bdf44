//! The call ticket (docs/attach.md §5.1, op 1): a unit's proxy, with the
//! subscriber's forwarded TGT, resolves a dialled number at the directory
//! in the subscriber's name, gets a service ticket for the callee's call
//! principal, and answers with the callee's home address and that ticket
//! in a KRB-CRED under the request's subkey.
//!
//! Every network step has [`STEP_TIMEOUT`]; three steps fit in the core's
//! 10 s for a proxy op. Service tickets (the directory's and callees')
//! are cached per proxy until [`TICKET_MARGIN`] before their end, so a
//! repeated call costs one directory resolve and no TGS. The resolve runs
//! every time: numbers move between units.

use std::{
    collections::HashMap,
    future::Future,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use roamgate_attach::{
    manager::ProxyRequest,
    proxy_manager::STEP_TIMEOUT,
    proxy_op::{ProxyReply, NUMBER_MAX},
};
use roamgate_directory::{
    client::{build_resolve_request, ClientError as DirectoryError},
    wire::Reason,
    DialledNumber, IdentityCode,
};
use roamgate_krb::{
    client::{self, ClientError, Credential, KdcTransport, TransportError},
    cred::build_krb_cred,
    Principal,
};

/// Q.850 causes of a refused call ticket.
pub const CAUSE_UNALLOCATED_NUMBER: u8 = 1;
/// The number is allocated (the directory resolves it), but the callee's
/// call principal cannot be ticketed: the callee is unreachable, the
/// number is not wrong, so not cause 1.
pub const CAUSE_NO_ROUTE: u8 = 3;
pub const CAUSE_INVALID_NUMBER_FORMAT: u8 = 28;
pub const CAUSE_TEMPORARY_FAILURE: u8 = 41;

/// A cached service ticket is used until this long before its end, so it
/// never expires between the unit receiving it and the callee's proxy
/// accepting it.
pub const TICKET_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Service tickets one proxy caches (the directory's and its callees').
pub const MAX_CACHED_TICKETS: usize = 64;

const OP_CALL_TICKET: u8 = 1;

/// Why a call ticket was refused.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("the number {0:?} is not 1 to {NUMBER_MAX} digits")]
    BadNumber(String),
    #[error("the subscriber's TGT {0} is expired")]
    TgtExpired(Principal),
    #[error("no directory ticket in the subscriber's name: {0}")]
    DirectoryTicket(ClientError),
    #[error("{0}")]
    DirectoryUnreachable(String),
    #[error("the directory has no unit with the number {0}")]
    UnknownNumber(DialledNumber),
    #[error("resolving the number at the directory: {0}")]
    Resolve(DirectoryError),
    #[error("no ticket for the callee's call principal {principal}: {source}")]
    CalleeTicket {
        principal: Principal,
        source: ClientError,
    },
}

/// KDC errors about the requested service principal itself.
fn callee_refused(code: i32) -> bool {
    use roamgate_krb::messages::error_code::*;
    matches!(
        code,
        KDC_ERR_SERVICE_EXP
            | KDC_ERR_POLICY
            | KDC_ERR_SERVICE_REVOKED
            | KDC_ERR_SERVICE_NOTYET
            | KDC_ERR_MUST_USE_USER2USER
    )
}

fn unreachable(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport(_))
}

impl TicketError {
    /// The Q.850 cause the unit puts in its RELEASE COMPLETE.
    pub fn q850_cause(&self) -> u8 {
        match self {
            Self::BadNumber(_) => CAUSE_INVALID_NUMBER_FORMAT,
            Self::UnknownNumber(_) => CAUSE_UNALLOCATED_NUMBER,
            // The KDC refused the callee's principal (unknown, expired,
            // revoked, keyless, policy): the number exists but its unit
            // cannot be called. An unreachable KDC or a problem with our
            // own TGT is temporary.
            Self::CalleeTicket {
                source: ClientError::ServiceUnknown(_),
                ..
            } => CAUSE_NO_ROUTE,
            Self::CalleeTicket {
                source: ClientError::Kdc { code, .. },
                ..
            } if callee_refused(*code) => CAUSE_NO_ROUTE,
            Self::TgtExpired(_)
            | Self::DirectoryTicket(_)
            | Self::DirectoryUnreachable(_)
            | Self::Resolve(_)
            | Self::CalleeTicket { .. } => CAUSE_TEMPORARY_FAILURE,
        }
    }

    /// What the operator can do about it, for the log line.
    pub fn fix(&self) -> &'static str {
        match self {
            Self::BadNumber(_) => "the unit dialled a malformed number",
            Self::UnknownNumber(_) => {
                "no unit has this number; provision it with `roamgate directory add-unit --dialled-number`"
            }
            Self::TgtExpired(_) => "the unit must switch on again for a fresh TGT",
            Self::DirectoryTicket(e) if unreachable(e) => {
                "check that the KDC (kerberos.kdc) is up and reachable"
            }
            Self::DirectoryTicket(_) => {
                "check that kerberos.directory_service exists at the KDC"
            }
            Self::DirectoryUnreachable(_) => {
                "check that the directory (directory.address) is up and reachable"
            }
            Self::Resolve(_) => "check the directory's log for the refusal and the clocks",
            Self::CalleeTicket { source, .. } if unreachable(source) => {
                "check that the KDC (kerberos.kdc) is up and reachable"
            }
            Self::CalleeTicket { .. } if self.q850_cause() != CAUSE_NO_ROUTE => {
                "check the KDC's log for the refusal and the clocks"
            }
            Self::CalleeTicket { .. } => {
                "add the callee's call principal to the KDC (`roamgate kdc add-principal call/<subscriber>`) \
                 with the call key its directory record holds"
            }
        }
    }
}

/// Where the call ticket's steps go.
#[derive(Debug, Clone)]
pub struct Servers {
    pub kdc: SocketAddr,
    pub directory: SocketAddr,
    pub directory_service: Principal,
}

/// One proxy's service tickets in the subscriber's name, by server
/// principal. Memory only; it goes with the proxy.
#[derive(Debug, Clone, Default)]
pub struct TicketCache(Arc<Mutex<HashMap<String, Credential>>>);

impl TicketCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Credential>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A ticket for `server` usable until at least `now` + [`TICKET_MARGIN`].
    pub fn get(&self, server: &Principal, now: SystemTime) -> Option<Credential> {
        let key = server.to_string();
        let mut m = self.lock();
        match m.get(&key) {
            Some(c) if c.end_time > now + TICKET_MARGIN => Some(c.clone()),
            Some(_) => {
                m.remove(&key);
                None
            }
            None => None,
        }
    }

    fn put(&self, cred: &Credential, now: SystemTime) {
        let mut m = self.lock();
        if m.len() >= MAX_CACHED_TICKETS {
            m.retain(|_, c| c.end_time > now + TICKET_MARGIN);
        }
        if m.len() >= MAX_CACHED_TICKETS {
            // Still full of live tickets: start over rather than grow.
            m.clear();
        }
        m.insert(cred.server.to_string(), cred.clone());
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a successful call ticket carries back.
#[derive(Debug)]
pub struct Issued {
    pub home_address: Ipv4Addr,
    /// The callee's call principal's ticket, in the subscriber's name.
    pub ticket: Credential,
}

async fn step<T>(
    kdc: SocketAddr,
    f: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Transport(TransportError::Timeout {
                kdc: kdc.to_string(),
                timeout: STEP_TIMEOUT,
            }))
        })
}

/// A service ticket for `service`, from the cache or the KDC.
pub(super) async fn service_ticket(
    servers: &Servers,
    tgt: &Credential,
    cache: &TicketCache,
    service: &Principal,
) -> Result<Credential, ClientError> {
    if let Some(c) = cache.get(service, SystemTime::now()) {
        return Ok(c);
    }
    let mut transport = KdcTransport::new(servers.kdc.to_string());
    // UDP and the TCP fallback both within the step.
    transport.timeout = STEP_TIMEOUT;
    let c = step(
        servers.kdc,
        client::get_service_ticket(&transport, tgt, service.clone(), SystemTime::now),
    )
    .await?;
    cache.put(&c, SystemTime::now());
    Ok(c)
}

/// Resolves `number` at the directory in the name of `tgt`'s client and
/// gets a ticket for the callee's call principal.
pub async fn call_ticket(
    servers: &Servers,
    tgt: &Credential,
    cache: &TicketCache,
    number: &str,
) -> Result<Issued, TicketError> {
    let number = DialledNumber::parse(number)
        .ok()
        .filter(|_| !number.starts_with('+'))
        .ok_or_else(|| TicketError::BadNumber(number.to_owned()))?;
    if !tgt.is_valid_at(SystemTime::now()) {
        return Err(TicketError::TgtExpired(tgt.client.clone()));
    }
    let dir_ticket = service_ticket(servers, tgt, cache, &servers.directory_service)
        .await
        .map_err(TicketError::DirectoryTicket)?;
    let (request, pending) = build_resolve_request(&dir_ticket, &number, SystemTime::now())
        .map_err(TicketError::Resolve)?;
    let answer = super::ask_directory(servers.directory, &request)
        .await
        .map_err(TicketError::DirectoryUnreachable)?;
    let resolution = pending
        .open(&answer, SystemTime::now())
        .map_err(|e| match e {
            DirectoryError::ResolveRefused {
                number,
                reason: Reason::UnknownNumber,
            } => TicketError::UnknownNumber(number),
            other => TicketError::Resolve(other),
        })?;
    let ticket = service_ticket(servers, tgt, cache, &resolution.call_principal)
        .await
        .map_err(|source| TicketError::CalleeTicket {
            principal: resolution.call_principal.clone(),
            source,
        })?;
    Ok(Issued {
        home_address: resolution.home_address,
        ticket,
    })
}

/// The outcome of a served call ticket, for the core and the counters.
#[derive(Debug)]
pub struct Served {
    /// The proxy answer frame (`Err`: no answer could be built).
    pub answer: Result<Vec<u8>, String>,
    pub issued: bool,
}

/// Serves a unit's call-ticket request for `number`: the answer frame,
/// a ticket or the Q.850 cause, sealed for the unit.
pub async fn serve(
    servers: &Servers,
    tgt: &Credential,
    cache: &TicketCache,
    unit: IdentityCode,
    request: &ProxyRequest,
    number: &str,
) -> Served {
    let failed = |cause| ProxyReply::Failed {
        op: OP_CALL_TICKET,
        cause,
    };
    let issued = match call_ticket(servers, tgt, cache, number).await {
        Ok(i) => i,
        Err(e) => {
            let cause = e.q850_cause();
            tracing::warn!(%unit, number, cause, error = %e, fix = e.fix(), "call ticket refused");
            return Served {
                answer: request
                    .answer(&failed(cause), SystemTime::now())
                    .map_err(|e| e.to_string()),
                issued: false,
            };
        }
    };
    let now = SystemTime::now();
    let krb_cred =
        match build_krb_cred(std::slice::from_ref(&issued.ticket), &request.subkey(), now) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(%unit, error = %e, "call ticket: the KRB-CRED could not be built");
                return Served {
                    answer: request
                        .answer(&failed(CAUSE_TEMPORARY_FAILURE), now)
                        .map_err(|e| e.to_string()),
                    issued: false,
                };
            }
        };
    tracing::info!(%unit, number, callee = %issued.ticket.server, home = %issued.home_address, "call ticket issued");
    let reply = ProxyReply::CallTicket {
        home_address: issued.home_address,
        krb_cred: &krb_cred,
    };
    let answer = request.answer(&reply, now).map_err(|e| e.to_string());
    Served {
        issued: answer.is_ok(),
        answer,
    }
}

/// The call ticket against the real thing in process: roamgate-krb's KDC
/// serving UDP/TCP on 127.0.0.1, and `roamgate directory`'s server over a
/// SQLite store in a tempdir. A unit builds the request, the proxy
/// manager's verifier opens it, [`serve`] answers, the unit opens that.
#[cfg(test)]
mod tests {
    use std::time::Instant;

    use roamgate_attach::{
        manager::Verified,
        proxy_op::ProxyOp,
        unit::{fetch_credentials, Unit, UnitCredentials, UnitEvent},
        Verifier,
    };
    use roamgate_directory::{DirectoryStore as _, MipKey, SqliteStore, UnitRecord};
    use roamgate_krb::{
        ap::KeySet,
        cred::open_krb_cred,
        kdc::{
            db::{MemoryStore, PrincipalFlags, PrincipalStore as _},
            server::{self, ServerConfig},
            Kdc, KdcConfig,
        },
        keytab::{Keytab, KeytabEntry},
        replay::{ReplayCache, CLOCK_SKEW},
    };
    use roamgate_krb_crypto::{Etype, Key};
    use tokio_util::sync::CancellationToken;

    use super::*;

    const REALM: &str = "HOME.TEST";
    const CALLER: &str = "unit1@HOME.TEST";
    const CALLEE: &str = "unit2@HOME.TEST";
    /// Has a number at the directory but no call principal at the KDC.
    const UNTICKETED: &str = "unit3@HOME.TEST";
    const DIRECTORY: &str = "directory/dir.home.test@HOME.TEST";
    const MANAGER: &str = "proxy-manager/pm.home.test@HOME.TEST";

    fn p(s: &str) -> Principal {
        Principal::parse(s).unwrap()
    }

    fn code(n: u8) -> IdentityCode {
        IdentityCode::from_bytes([n; 16])
    }

    fn record(n: u8, principal: &str) -> UnitRecord {
        UnitRecord {
            code: code(n),
            principal: p(principal),
            home_address: Ipv4Addr::new(10, 9, 0, n),
            home_agent: Ipv4Addr::new(10, 9, 0, 254),
            mip_spi: 0x1000 + u32::from(n),
            mip_key: MipKey::new(&[n; 16]).unwrap(),
            account: format!("acct-{n}"),
            dialled_number: Some(DialledNumber::parse(&format!("+4930{n}{n}{n}")).unwrap()),
            call_key: None,
        }
    }

    struct Realm {
        store: Arc<MemoryStore>,
        kdc: SocketAddr,
        directory: SocketAddr,
        stop_kdc: CancellationToken,
        stop_directory: CancellationToken,
        _tmp: tempfile::TempDir,
    }

    impl Realm {
        fn keys(&self, name: &str) -> Vec<(u32, Key)> {
            let e = self.store.get(&p(name)).unwrap().unwrap();
            e.keys.iter().map(|k| (k.kvno, k.key.clone())).collect()
        }

        async fn start() -> Self {
            let store = Arc::new(MemoryStore::new(REALM));
            let et = [Etype::Aes256CtsHmacSha196];
            store.add_random(&Principal::krbtgt(REALM), &et, PrincipalFlags::DEFAULT);
            for name in [
                CALLER,
                CALLEE,
                UNTICKETED,
                "call/unit2@HOME.TEST",
                DIRECTORY,
                MANAGER,
            ] {
                store.add_random(&p(name), &et, PrincipalFlags::DEFAULT);
            }
            let kdc = Arc::new(Kdc::new(store.clone(), KdcConfig::default()));
            let bound = server::bind(ServerConfig::new(([127, 0, 0, 1], 0).into()))
                .await
                .unwrap();
            let kdc_addr = bound.local_addr();
            let stop_kdc = CancellationToken::new();
            tokio::spawn(bound.run(kdc, stop_kdc.clone().cancelled_owned()));

            let tmp = tempfile::tempdir().unwrap();
            let mut cfg = crate::directory::config::DirectoryFile::default();
            cfg.directory.database = tmp.path().join("state/directory.sqlite");
            std::fs::create_dir_all(tmp.path().join("state")).unwrap();
            let db = SqliteStore::open(&cfg.directory.database).unwrap();
            for (n, name) in [(1, CALLER), (2, CALLEE), (3, UNTICKETED)] {
                db.add(&record(n, name)).unwrap();
            }
            drop(db);
            let mut kt = Keytab::new();
            for k in &store.get(&p(DIRECTORY)).unwrap().unwrap().keys {
                kt.push(KeytabEntry {
                    principal: p(DIRECTORY),
                    timestamp: 0,
                    kvno: k.kvno,
                    key: k.key.clone(),
                });
            }
            cfg.kerberos.keytab = tmp.path().join("directory.keytab");
            cfg.kerberos.service = DIRECTORY.to_owned();
            kt.save(&cfg.kerberos.keytab).unwrap();
            let directory = free_udp_port();
            cfg.directory.listen = directory;
            let stop_directory = CancellationToken::new();
            // On a runtime of its own: its loop is a blocking task, which
            // would hold the test's runtime open if an assertion failed.
            let stop = stop_directory.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(crate::directory::serve(cfg, stop)).unwrap();
            });
            // Bound once our own bind of its address fails.
            let t0 = Instant::now();
            while std::net::UdpSocket::bind(directory).is_ok() {
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "the directory never bound"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Self {
                store,
                kdc: kdc_addr,
                directory,
                stop_kdc,
                stop_directory,
                _tmp: tmp,
            }
        }

        fn servers(&self) -> Servers {
            Servers {
                kdc: self.kdc,
                directory: self.directory,
                directory_service: p(DIRECTORY),
            }
        }

        /// What the unit fetches to switch on; its forwarded TGT is what
        /// the proxy holds.
        async fn caller(&self) -> UnitCredentials {
            let keys = self.keys(CALLER).into_iter().map(|(_, k)| k).collect();
            fetch_credentials(
                &KdcTransport::new(self.kdc.to_string()),
                p(CALLER),
                keys,
                p(MANAGER),
                SystemTime::now,
            )
            .await
            .unwrap()
        }

        fn verifier(&self) -> Verifier<KeySet> {
            let keys = self.keys(MANAGER);
            Verifier::new(
                p(MANAGER),
                KeySet(keys.into_iter().map(|(v, k)| (p(MANAGER), v, k)).collect()),
            )
        }
    }

    impl Drop for Realm {
        fn drop(&mut self) {
            self.stop_kdc.cancel();
            self.stop_directory.cancel();
        }
    }

    fn free_udp_port() -> SocketAddr {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    /// The unit asks for `number`, the proxy serves it: the reply as the
    /// unit opens it, whether it was counted issued, and the request's
    /// subkey.
    async fn ask(
        verifier: &mut Verifier<KeySet>,
        servers: &Servers,
        creds: &UnitCredentials,
        cache: &TicketCache,
        number: &str,
    ) -> (Vec<u8>, bool, Key) {
        let mut unit = Unit::new(code(1), creds.clone()).unwrap();
        let body = ProxyOp::CallTicket { number }.to_bytes().unwrap();
        let now = SystemTime::now();
        let frame = unit.proxy_request(&body, now).unwrap();
        let Ok(Verified::Proxy(request)) = verifier.verify(&frame, now) else {
            panic!("the proxy manager refused the unit's request")
        };
        let s = serve(
            servers,
            &creds.forwarded_tgt,
            cache,
            code(1),
            &request,
            number,
        )
        .await;
        let answer = s.answer.expect("an answer frame");
        let UnitEvent::Proxy(plain) = unit.handle_input(&answer, SystemTime::now()).unwrap() else {
            panic!("not a proxy answer")
        };
        (plain.to_vec(), s.issued, request.subkey())
    }

    fn cause_of(plain: &[u8]) -> u8 {
        match ProxyReply::parse(plain, OP_CALL_TICKET).unwrap() {
            ProxyReply::Failed { op: 1, cause } => cause,
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn call_ticket_resolves_tickets_and_refuses_with_q850_causes() {
        let realm = Realm::start().await;
        let v = &mut realm.verifier();
        let servers = realm.servers();
        let creds = realm.caller().await;
        let cache = TicketCache::default();

        // The callee's number: its home address, and a KRB-CRED under the
        // request's subkey holding the callee call principal's ticket in
        // the subscriber's name.
        let (plain, issued, subkey) = ask(v, &servers, &creds, &cache, "4930222").await;
        let ProxyReply::CallTicket {
            home_address,
            krb_cred,
        } = ProxyReply::parse(&plain, OP_CALL_TICKET).unwrap()
        else {
            panic!("refused: {plain:?}")
        };
        assert!(issued);
        assert_eq!(home_address, Ipv4Addr::new(10, 9, 0, 2));
        let mut replay = ReplayCache::new(CLOCK_SKEW, 16);
        let tickets = open_krb_cred(
            krb_cred,
            &subkey,
            CLOCK_SKEW,
            &mut replay,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(tickets.len(), 1);
        assert_eq!(tickets[0].server, p("call/unit2@HOME.TEST"));
        assert_eq!(tickets[0].client, p(CALLER));
        assert!(tickets[0].is_valid_at(SystemTime::now()));
        // Not under another key.
        let other = Key::random(subkey.etype());
        assert!(
            open_krb_cred(krb_cred, &other, CLOCK_SKEW, &mut replay, SystemTime::now()).is_err()
        );
        // The directory's ticket and the callee's are cached.
        assert_eq!(cache.len(), 2);

        // No unit has the number: 1, unallocated number.
        let (plain, issued, _) = ask(v, &servers, &creds, &cache, "4930999").await;
        assert_eq!(
            (cause_of(&plain), issued),
            (CAUSE_UNALLOCATED_NUMBER, false)
        );

        // The number resolves, the KDC has no call principal for it: 3.
        let (plain, _, _) = ask(v, &servers, &creds, &cache, "4930333").await;
        assert_eq!(cause_of(&plain), CAUSE_NO_ROUTE);

        // A malformed number never reaches the directory: 28.
        let e = call_ticket(&servers, &creds.forwarded_tgt, &cache, "+4930222")
            .await
            .unwrap_err();
        assert_eq!(e.q850_cause(), CAUSE_INVALID_NUMBER_FORMAT, "{e}");

        // A proxy with a fresh cache and no KDC: 41, temporary failure.
        let no_kdc = Servers {
            kdc: free_udp_port(),
            ..servers.clone()
        };
        let (plain, _, _) = ask(v, &no_kdc, &creds, &TicketCache::default(), "4930222").await;
        assert_eq!(cause_of(&plain), CAUSE_TEMPORARY_FAILURE);

        // The KDC goes down: the same number again still resolves at the
        // directory and costs no TGS (the cached tickets).
        realm.stop_kdc.cancel();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (plain, issued, _) = ask(v, &servers, &creds, &cache, "4930222").await;
        assert!(issued, "{:?}", ProxyReply::parse(&plain, OP_CALL_TICKET));
        // A ticket within five minutes of its end is not used: with the
        // KDC down, no ticket.
        let callee = p("call/unit2@HOME.TEST");
        cache
            .lock()
            .get_mut(&callee.to_string())
            .expect("the callee's ticket is cached")
            .end_time = SystemTime::now() + TICKET_MARGIN - Duration::from_secs(10);
        let (plain, issued, _) = ask(v, &servers, &creds, &cache, "4930222").await;
        assert_eq!((cause_of(&plain), issued), (CAUSE_TEMPORARY_FAILURE, false));
        assert!(cache.get(&callee, SystemTime::now()).is_none());

        // The directory silent: 41 at the step timeout, not the op's.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let quiet = Servers {
            directory: silent.local_addr().unwrap(),
            ..servers.clone()
        };
        let t0 = Instant::now();
        let (plain, issued, _) = ask(v, &quiet, &creds, &cache, "4930222").await;
        let took = t0.elapsed();
        assert_eq!((cause_of(&plain), issued), (CAUSE_TEMPORARY_FAILURE, false));
        assert!(
            took >= STEP_TIMEOUT && took < STEP_TIMEOUT + Duration::from_secs(1),
            "{took:?}"
        );
        // And the directory stopped: 41 at once (port unreachable).
        realm.stop_directory.cancel();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let t0 = Instant::now();
        let (plain, _, _) = ask(v, &servers, &creds, &cache, "4930222").await;
        assert_eq!(cause_of(&plain), CAUSE_TEMPORARY_FAILURE);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}

//! A realm for the tests: roamgate-krb's KDC core in process, a caller
//! subscriber and two call principals, on a fixed clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb::ap::KeySet;
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

use crate::handshake::CallId;

pub(crate) const REALM: &str = "HOME.TEST";
pub(crate) const CALLER: &str = "unit1@HOME.TEST";
pub(crate) const CALLEE: &str = "call/unit2@HOME.TEST";
pub(crate) const OTHER_CALLEE: &str = "call/unit3@HOME.TEST";
pub(crate) const CALL: CallId = [7; 16];
pub(crate) const NUMBER: &str = "4940123456";

pub(crate) fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

pub(crate) fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

pub(crate) struct Realm {
    kdc: Kdc,
    store: Arc<MemoryStore>,
}

impl Realm {
    pub(crate) fn new() -> Self {
        let store = Arc::new(MemoryStore::new(REALM));
        store.add_random(
            &Principal::krbtgt(REALM),
            &Etype::ALL,
            PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
        );
        for name in [CALLER, CALLEE, OTHER_CALLEE] {
            store.add_random(&p(name), &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        let kdc = Kdc::new(store.clone(), KdcConfig::default());
        Self { kdc, store }
    }

    pub(crate) fn keys(&self, name: &str) -> KeySet {
        let e = self.store.get(&p(name)).unwrap().unwrap();
        KeySet(
            e.keys
                .iter()
                .map(|k| (p(name), k.kvno, k.key.clone()))
                .collect(),
        )
    }

    /// The caller's proxy: a TGT as the subscriber, then a ticket for the
    /// callee's call principal.
    pub(crate) fn ticket(&self, callee: &str, now: SystemTime) -> Credential {
        let keys = self.keys(CALLER).0.into_iter().map(|(_, _, k)| k).collect();
        let mut ex =
            AsExchange::new(p(CALLER), ClientSecret::Keys(keys), AsOptions::default()).unwrap();
        let mut req = ex.first_request(now).unwrap();
        let tgt = loop {
            let reply = self.kdc.handle(&req, now).unwrap();
            match ex.handle_reply(&reply, now).unwrap() {
                AsStep::Send(next) => req = next,
                AsStep::Done(c) => break *c,
            }
        };
        let tgs = TgsExchange::new(&tgt, p(callee), 0).unwrap();
        let reply = self.kdc.handle(&tgs.request(now).unwrap(), now).unwrap();
        tgs.handle_reply(&reply).unwrap()
    }
}

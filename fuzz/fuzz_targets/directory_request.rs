//! The directory's parsers and core (docs/directory.md): any input is an
//! error or a message that re-encodes to itself; the core never panics,
//! answers exactly the well-framed requests (lookups and resolves), and
//! its error answers are smaller than the request (no amplification). The
//! client-side parsers (answer framing, record, resolution) get the same
//! bytes.
#![no_main]

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_directory::server::Outcome;
use roamgate_directory::store::{AuditEntry, DirectoryStore, StoreError};
use roamgate_directory::wire::{Reply, Request, ResolveReply, ResolveRequest, Resolved};
use roamgate_directory::{
    DialledNumber, Directory, DirectoryConfig, IdentityCode, MipKey, Resolution, UnitRecord,
};
use roamgate_krb::ap::KeySet;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

/// The service, key and client of fuzz/seedgen (AP_SERVICE, AP_SERVICE_KEY,
/// REPLY_CLIENT), and the code and number its seeds ask for.
const SERVICE: &str = "svc/host@FUZZ.TEST";
const CLIENT: &str = "alice@FUZZ.TEST";
const CODE: [u8; 16] = [0x5e; 16];
const NUMBER: &str = "+4930555";

/// The target's store: one record, audit entries counted.
struct OneUnit(UnitRecord, Mutex<usize>);

impl DirectoryStore for OneUnit {
    fn get(&self, code: &IdentityCode) -> Result<Option<UnitRecord>, StoreError> {
        Ok((*code == self.0.code).then(|| self.0.clone()))
    }
    fn get_by_number(&self, number: &DialledNumber) -> Result<Option<UnitRecord>, StoreError> {
        Ok((self.0.dialled_number.as_ref() == Some(number)).then(|| self.0.clone()))
    }
    fn is_subscriber(&self, principal: &Principal) -> Result<bool, StoreError> {
        Ok(*principal == self.0.principal)
    }
    fn add(&self, _: &UnitRecord) -> Result<(), StoreError> {
        Ok(())
    }
    fn put(&self, _: &UnitRecord) -> Result<(), StoreError> {
        Ok(())
    }
    fn remove(&self, _: &IdentityCode) -> Result<bool, StoreError> {
        Ok(false)
    }
    fn list(&self) -> Result<Vec<UnitRecord>, StoreError> {
        Ok(vec![self.0.clone()])
    }
    fn audit(&self, _: &AuditEntry) -> Result<(), StoreError> {
        *self.1.lock().unwrap() += 1;
        Ok(())
    }
    fn audit_log(&self, _: usize) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(Vec::new())
    }
    fn audit_prune(&self, _: std::time::SystemTime) -> Result<u64, StoreError> {
        Ok(0)
    }
}

fuzz_target!(|data: &[u8]| {
    let lookup = Request::parse(data);
    if let Ok(r) = &lookup {
        assert_eq!(r.encode(), data, "a parsed request re-encodes to itself");
    }
    let resolve = ResolveRequest::parse(data);
    if let Ok(r) = &resolve {
        assert_eq!(r.encode(), data, "a parsed resolve re-encodes to itself");
    }
    assert!(lookup.is_err() || resolve.is_err(), "one kind per datagram");
    let parsed_ok = lookup.is_ok() || resolve.is_ok();
    if let Ok(Reply::Answer(a)) = Reply::parse(data) {
        assert_eq!(a.encode(), data, "a parsed answer re-encodes to itself");
    }
    if let Ok(ResolveReply::Resolved(a)) = ResolveReply::parse(data) {
        let again = Resolved {
            number: a.number.clone(),
            ap_rep: a.ap_rep,
            krb_priv: a.krb_priv,
        };
        assert_eq!(again.encode(), data, "a parsed resolution answer re-encodes to itself");
    }
    if let Ok(rec) = UnitRecord::decode(data) {
        assert_eq!(&rec.encode()[..], data, "a decoded record re-encodes to itself");
    }
    if let Ok(res) = Resolution::decode(data) {
        assert_eq!(res.encode(), data, "a decoded resolution re-encodes to itself");
    }

    let service = Principal::parse(SERVICE).expect("valid principal");
    let keys = KeySet(vec![(
        service.clone(),
        1,
        Key::new(Etype::Aes128CtsHmacSha196, &[0x42; 16]).expect("valid key"),
    )]);
    let record = UnitRecord {
        code: IdentityCode::from_bytes(CODE),
        principal: Principal::parse(CLIENT).expect("valid principal"),
        home_address: Ipv4Addr::new(10, 1, 0, 10),
        home_agent: Ipv4Addr::new(10, 1, 0, 1),
        mip_spi: 0x1000,
        mip_key: MipKey::new(&[0x11; 16]).expect("valid key"),
        account: "fuzz".into(),
        dialled_number: Some(DialledNumber::parse(NUMBER).expect("valid number")),
        call_key: None,
    };
    let mut dir = Directory::new(
        OneUnit(record, Mutex::new(0)),
        keys,
        DirectoryConfig::new(service),
    );
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let h = dir.handle(data, now);
    assert_eq!(h.reply.is_some(), parsed_ok);
    match h.outcome {
        Outcome::Dropped(_) => assert!(!parsed_ok),
        Outcome::Refused { .. } | Outcome::ResolveRefused { .. } => {
            let reply = h.reply.expect("a refusal is answered");
            assert!(reply.len() < data.len(), "error answers never amplify");
            assert_eq!(*dir.store().1.lock().unwrap(), 1, "every refusal is audited");
        }
        Outcome::Served { .. } | Outcome::Resolved { .. } => {
            assert_eq!(*dir.store().1.lock().unwrap(), 1)
        }
    }
});

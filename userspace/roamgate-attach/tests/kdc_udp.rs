//! The unit's credential fetch over the network: `fetch_credentials`
//! against roamgate's KDC served on loopback UDP, then a switch-on the
//! proxy manager verifies, on the real clock.

use std::sync::Arc;
use std::time::SystemTime;

use roamgate_attach::manager::Verified;
use roamgate_attach::unit::{fetch_credentials, Unit, UnitEvent};
use roamgate_attach::Verifier;
use roamgate_directory::IdentityCode;
use roamgate_krb::ap::KeySet;
use roamgate_krb::client::{ClientError, KdcTransport};
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::server::{bind, ServerConfig};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

const REALM: &str = "HOME.TEST";

fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

#[tokio::test]
async fn unit_fetches_its_credentials_from_a_kdc_and_switches_on() {
    let store = Arc::new(MemoryStore::new(REALM));
    store.add_random(
        &Principal::krbtgt(REALM),
        &Etype::ALL,
        PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
    );
    let (unit, manager) = (p("unit1@HOME.TEST"), p("attach/pm.home.test@HOME.TEST"));
    store.add_random(&unit, &Etype::ALL, PrincipalFlags::DEFAULT);
    store.add_random(&manager, &Etype::ALL, PrincipalFlags::DEFAULT);
    let keys = |who: &Principal| -> Vec<(u32, Key)> {
        let e = store.get(who).unwrap().unwrap();
        e.keys.iter().map(|k| (k.kvno, k.key.clone())).collect()
    };
    let unit_keys: Vec<Key> = keys(&unit).into_iter().map(|(_, k)| k).collect();
    let manager_keys = KeySet(
        keys(&manager)
            .into_iter()
            .map(|(v, k)| (manager.clone(), v, k))
            .collect(),
    );

    let kdc = Arc::new(Kdc::new(store.clone(), KdcConfig::default()));
    let bound = bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let transport = KdcTransport::new(bound.local_addr().to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(bound.run(kdc, async {
        let _ = stopped.await;
    }));

    // A wrong key gets nothing.
    let wrong = vec![Key::random(Etype::Aes256CtsHmacSha196)];
    let err = fetch_credentials(
        &transport,
        unit.clone(),
        wrong,
        manager.clone(),
        SystemTime::now,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::PreauthFailed(_)), "{err}");

    let creds = fetch_credentials(
        &transport,
        unit.clone(),
        unit_keys,
        manager.clone(),
        SystemTime::now,
    )
    .await
    .unwrap();
    assert_eq!(creds.manager_ticket.server, manager);
    assert!(creds.forwarded_tgt.is_tgt());

    let mut u = Unit::new(IdentityCode::from_bytes([7; 16]), creds).unwrap();
    let mut v = Verifier::new(manager, manager_keys);
    let frame = u.switch_on(SystemTime::now()).unwrap();
    let Ok(Verified::SwitchOn(s)) = v.verify(&frame, SystemTime::now()) else {
        panic!("switch-on refused")
    };
    assert_eq!(s.client, unit);
    assert_eq!(
        u.handle_input(&s.ack().unwrap(), SystemTime::now())
            .unwrap(),
        UnitEvent::SwitchedOn
    );

    let _ = stop.send(());
    server.await.unwrap();
}

//! What `roamgate kdc` does to the SQLite store besides serving it: add,
//! re-key, delete and list principals, and export their keys.

use roamgate_krb_crypto::{Etype, Key};
use rusqlite::{params, Connection, OptionalExtension};

use super::{DbError, KeyEntry, NewKeys, NewPrincipal, SqliteDb};
use crate::principal::Principal;

impl SqliteDb {
    fn make_keys(
        &self,
        principal: &Principal,
        keys: &NewKeys<'_>,
        etypes: &[Etype],
        kvno: u32,
    ) -> Result<Vec<KeyEntry>, DbError> {
        let salt = principal.default_salt();
        etypes
            .iter()
            .map(|&etype| {
                let s2kparams = etype.default_s2kparams();
                let key = match keys {
                    NewKeys::Password(pw) => Key::from_password(etype, pw, &salt, Some(&s2kparams))
                        .map_err(DbError::StringToKey)?,
                    NewKeys::Random => Key::random(etype),
                    NewKeys::Given(keys) => keys
                        .iter()
                        .find(|k| k.etype() == etype)
                        .cloned()
                        .ok_or(DbError::MissingKey(etype))?,
                };
                Ok(KeyEntry {
                    kvno,
                    key,
                    salt: salt.clone(),
                    s2kparams,
                })
            })
            .collect()
    }

    fn store_keys(&self, conn: &Connection, name: &str, keys: &[KeyEntry]) -> Result<(), DbError> {
        for k in keys {
            let etype = k.key.etype().to_i32();
            let enc = self.master.wrap(name, k.kvno, &k.key);
            conn.execute(
                "INSERT INTO keys (name, etype, kvno, salt, s2kparams, enc_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, etype, k.kvno, k.salt, k.s2kparams, enc],
            )
            .map_err(self.sql())?;
        }
        Ok(())
    }

    /// Adds a principal with keys for `opts.etypes` at kvno 1.
    pub fn add_principal(
        &self,
        principal: &Principal,
        keys: NewKeys<'_>,
        opts: &NewPrincipal,
    ) -> Result<(), DbError> {
        self.check_realm(principal)?;
        let name = principal.name();
        let new_keys = self.make_keys(principal, &keys, &opts.etypes, 1)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.sql())?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO principals (name, kvno, flags, max_life, max_renew) VALUES (?1, 1, ?2, ?3, ?4)",
                params![
                    name,
                    opts.flags.0,
                    opts.max_life.as_secs(),
                    opts.max_renew.as_secs()
                ],
            )
            .map_err(self.sql())?;
        if inserted == 0 {
            return Err(DbError::PrincipalExists(principal.to_string()));
        }
        self.store_keys(&tx, &name, &new_keys)?;
        tx.commit().map_err(self.sql())
    }

    /// Replaces a principal's keys with new ones at the next kvno. Old keys
    /// are kept so that tickets issued under them stay valid.
    pub fn change_keys(
        &self,
        principal: &Principal,
        keys: NewKeys<'_>,
        etypes: &[Etype],
    ) -> Result<u32, DbError> {
        self.check_realm(principal)?;
        let name = principal.name();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.sql())?;
        let kvno: Option<u32> = tx
            .query_row(
                "SELECT kvno FROM principals WHERE name = ?1",
                [&name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        let kvno = kvno
            .ok_or_else(|| DbError::PrincipalNotFound(principal.to_string()))?
            .wrapping_add(1)
            .max(1);
        let new_keys = self.make_keys(principal, &keys, etypes, kvno)?;
        tx.execute(
            "UPDATE principals SET kvno = ?2 WHERE name = ?1",
            params![name, kvno],
        )
        .map_err(self.sql())?;
        self.store_keys(&tx, &name, &new_keys)?;
        tx.commit().map_err(self.sql())?;
        Ok(kvno)
    }

    /// Removes a principal and its keys.
    pub fn delete_principal(&self, principal: &Principal) -> Result<(), DbError> {
        self.check_realm(principal)?;
        let conn = self.conn();
        conn.execute("DELETE FROM keys WHERE name = ?1", [principal.name()])
            .map_err(self.sql())?;
        let n = conn
            .execute("DELETE FROM principals WHERE name = ?1", [principal.name()])
            .map_err(self.sql())?;
        if n == 0 {
            return Err(DbError::PrincipalNotFound(principal.to_string()));
        }
        Ok(())
    }

    /// Every principal name, sorted.
    pub fn list(&self) -> Result<Vec<Principal>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name FROM principals ORDER BY name")
            .map_err(self.sql())?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(names
            .into_iter()
            .filter_map(|n| Principal::parse_with_realm(&n, &self.realm).ok())
            .collect())
    }

    /// Every stored key of a principal, all kvnos, for keytab export.
    pub fn all_keys(&self, principal: &Principal) -> Result<Vec<KeyEntry>, DbError> {
        self.check_realm(principal)?;
        self.load(principal, false)?
            .map(|e| e.keys)
            .ok_or_else(|| DbError::PrincipalNotFound(principal.to_string()))
    }
}

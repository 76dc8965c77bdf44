//! Principal names as operators write them: `name@REALM`, `service/host@REALM`.

use std::fmt;

/// RFC 4120 §6.2 name types used by roamgate.
pub mod name_type {
    pub const UNKNOWN: i32 = 0;
    pub const PRINCIPAL: i32 = 1;
    pub const SRV_INST: i32 = 2;
    pub const SRV_HST: i32 = 3;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub realm: String,
    pub name_type: i32,
    pub components: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrincipalError {
    #[error("principal {0:?} has no realm; write it as name@REALM")]
    MissingRealm(String),
    #[error("principal {0:?} has an empty component")]
    EmptyComponent(String),
    #[error("principal {0:?} has more than one '@'")]
    TwoRealms(String),
}

impl Principal {
    /// Parses `a/b@REALM`. A name of one component is NT-PRINCIPAL, of more
    /// components NT-SRV-INST, as MIT's tools do.
    pub fn parse(s: &str) -> Result<Self, PrincipalError> {
        let (name, realm) = s
            .rsplit_once('@')
            .ok_or_else(|| PrincipalError::MissingRealm(s.to_owned()))?;
        if name.contains('@') {
            return Err(PrincipalError::TwoRealms(s.to_owned()));
        }
        if realm.is_empty() {
            return Err(PrincipalError::MissingRealm(s.to_owned()));
        }
        let components: Vec<String> = name.split('/').map(str::to_owned).collect();
        if components.iter().any(String::is_empty) {
            return Err(PrincipalError::EmptyComponent(s.to_owned()));
        }
        let name_type = if components.len() == 1 {
            name_type::PRINCIPAL
        } else {
            name_type::SRV_INST
        };
        Ok(Self {
            realm: realm.to_owned(),
            name_type,
            components,
        })
    }

    /// Parses `a/b` or `a/b@REALM`, defaulting the realm.
    pub fn parse_with_realm(s: &str, default_realm: &str) -> Result<Self, PrincipalError> {
        if s.contains('@') {
            Self::parse(s)
        } else {
            Self::parse(&format!("{s}@{default_realm}"))
        }
    }

    /// `krbtgt/REALM@REALM`.
    pub fn krbtgt(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            name_type: name_type::SRV_INST,
            components: vec!["krbtgt".to_owned(), realm.to_owned()],
        }
    }

    /// The name without the realm, components joined by '/'.
    pub fn name(&self) -> String {
        self.components.join("/")
    }

    /// The RFC 3962 default salt: realm followed by each component.
    pub fn default_salt(&self) -> Vec<u8> {
        let mut s = self.realm.clone().into_bytes();
        for c in &self.components {
            s.extend_from_slice(c.as_bytes());
        }
        s
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name(), self.realm)
    }
}

impl std::str::FromStr for Principal {
    type Err = PrincipalError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_user_and_service() {
        let p = Principal::parse("alice@EXAMPLE.COM").unwrap();
        assert_eq!(p.components, ["alice"]);
        assert_eq!(p.name_type, name_type::PRINCIPAL);
        let s = Principal::parse("host/ha.example.com@EXAMPLE.COM").unwrap();
        assert_eq!(s.components, ["host", "ha.example.com"]);
        assert_eq!(s.name_type, name_type::SRV_INST);
        assert_eq!(s.to_string(), "host/ha.example.com@EXAMPLE.COM");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(
            Principal::parse("alice"),
            Err(PrincipalError::MissingRealm(_))
        ));
        assert!(matches!(
            Principal::parse("alice@"),
            Err(PrincipalError::MissingRealm(_))
        ));
        assert!(matches!(
            Principal::parse("a//b@R"),
            Err(PrincipalError::EmptyComponent(_))
        ));
        assert!(matches!(
            Principal::parse("a@b@R"),
            Err(PrincipalError::TwoRealms(_))
        ));
    }

    #[test]
    fn salt_is_realm_then_components() {
        // RFC 3962 Appendix B uses "ATHENA.MIT.EDUraeburn".
        let p = Principal::parse("raeburn@ATHENA.MIT.EDU").unwrap();
        assert_eq!(p.default_salt(), b"ATHENA.MIT.EDUraeburn");
    }
}

//! Who called: the role and id in the URI SAN of the client certificate (with TLS,
//! docs/security.md), else the peer address.

use std::fmt;
use std::net::SocketAddr;

use tonic::Request;
use x509_parser::extensions::GeneralName;

/// The caller of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// (role, id) from `walb://role/<role>/<id>` in the client certificate.
    pub role: Option<(String, String)>,
    pub addr: Option<SocketAddr>,
    /// The call came over TLS (then its role decides what it may run).
    pub tls: bool,
}

impl Peer {
    pub fn of<T>(req: &Request<T>) -> Peer {
        let certs = req.peer_certs();
        Peer {
            role: certs
                .as_ref()
                .and_then(|certs| certs.first().and_then(|c| role_of(c.as_ref()))),
            addr: req.remote_addr(),
            tls: certs.is_some(),
        }
    }

    /// What per-peer limits count by: the certificate's role and id, else the IP address.
    pub fn key(&self) -> String {
        match (&self.role, self.addr) {
            (Some((role, id)), _) => format!("{role}/{id}"),
            (None, Some(a)) => a.ip().to_string(),
            (None, None) => "unknown".into(),
        }
    }

    /// The caller's role, when its certificate names one.
    pub fn role(&self) -> Option<&str> {
        self.role.as_ref().map(|(r, _)| r.as_str())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.role, self.addr) {
            (Some((role, id)), _) => write!(f, "{role}/{id}"),
            (None, Some(a)) => write!(f, "{a}"),
            (None, None) => write!(f, "unknown"),
        }
    }
}

/// (role, id) of the first `walb://role/…` URI SAN of a DER certificate.
pub fn role_of(der: &[u8]) -> Option<(String, String)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(u) => {
            walb_proto::wire::parse_role_uri(u).map(|(role, id)| (role.to_string(), id.to_string()))
        }
        _ => None,
    })
}

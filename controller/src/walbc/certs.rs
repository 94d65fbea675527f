//! Certificates for a TLS cluster (`walbc gen-certs`, docs/security.md): a CA, one certificate
//! per server of the layout (its host as DNS or IP SAN, `walb://role/<kind>/<id>` as URI SAN),
//! one for walbc and one for monitoring. Every certificate serves as both server and client
//! identity.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use walb_proto::wire::role_uri;

use super::layout::{Kind, Layout};

/// The CA's file names in the output directory.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";

/// A CA that signs certificates.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// gen-certs' CA name.
const CA_NAME: &str = "walb-rs CA";

/// A certificate's validity: (year, month, day) of its first and last day.
pub type Validity = [(i32, u8, u8); 2];

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Result<Ca> {
        Ca::with_key(name, KeyPair::generate()?)
    }

    fn with_key(name: &str, key: KeyPair) -> Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// The CA gen-certs wrote into `dir`, to sign more certificates with: the same name and
    /// key, so what it signs verifies against `ca.crt`.
    pub fn load(dir: &Path) -> Result<Ca> {
        let path = dir.join(CA_KEY);
        let pem =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        Ca::with_key(CA_NAME, KeyPair::from_pem(&pem)?)
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// (certificate PEM, key PEM) for `hosts` (DNS names or IPs) and, when given, the URI SAN
    /// of `role` `id`.
    pub fn issue(&self, hosts: &[String], role: Option<(&str, &str)>) -> Result<(String, String)> {
        self.issue_valid(hosts, role, None)
    }

    /// `issue`, valid over `validity` when given (else rcgen's default, 1975 to 4096).
    pub fn issue_valid(
        &self,
        hosts: &[String],
        role: Option<(&str, &str)>,
        validity: Option<Validity>,
    ) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(hosts.to_vec())?;
        if let Some([(y0, m0, d0), (y1, m1, d1)]) = validity {
            params.not_before = rcgen::date_time_ymd(y0, m0, d0);
            params.not_after = rcgen::date_time_ymd(y1, m1, d1);
        }
        if let Some((role, id)) = role {
            params.distinguished_name.push(DnType::CommonName, id);
            params
                .subject_alt_names
                .push(SanType::URI(role_uri(role, id).try_into()?));
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The role a server of `kind` has in its certificate.
pub fn role(kind: Kind) -> &'static str {
    match kind {
        Kind::Storage => "storage",
        Kind::Proxy => "proxy",
        Kind::Archive => "archive",
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host(addr: &str) -> &str {
    let h = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    h.trim_start_matches('[').trim_end_matches(']')
}

/// Writes `pem` to `path`, readable by its owner only when `secret`.
pub fn write_pem(path: &Path, pem: &str, secret: bool) -> Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("write {}", path.display()))
}

/// Writes `<name>.crt` and `<name>.key` (0600) under `dir`.
pub fn write_pair(dir: &Path, name: &str, (cert, key): (String, String)) -> Result<()> {
    write_pem(&dir.join(format!("{name}.crt")), &cert, false)?;
    write_pem(&dir.join(format!("{name}.key")), &key, true)
}

/// `walbc gen-certs`: a CA in `dir` (refused over an existing one unless `force`), a pair per
/// server of `layout` named by its id, `controller` and `monitor`.
pub fn generate(dir: &Path, layout: &Layout, force: bool) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let ca_path = dir.join(CA_CERT);
    if ca_path.exists() && !force {
        bail!(
            "{} exists: certificates it signed would stop working; --force makes a new CA",
            ca_path.display()
        );
    }
    let ca = Ca::new(CA_NAME)?;
    write_pem(&ca_path, &ca.cert_pem(), false)?;
    write_pem(&dir.join(CA_KEY), &ca.key_pem(), true)?;
    for (kind, s) in layout.all() {
        let hosts: Vec<String> = std::iter::once(host(&s.addr).to_string())
            .chain(s.names.iter().cloned())
            .collect();
        let pair = ca.issue(&hosts, Some((role(kind), &s.id)))?;
        write_pair(dir, &s.id, pair)?;
    }
    for (role, id) in [("controller", "walbc"), ("monitor", "monitor")] {
        write_pair(dir, role, ca.issue(&[], Some((role, id)))?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_an_address() {
        assert_eq!(host("10.0.0.1:9"), "10.0.0.1");
        assert_eq!(host("[::1]:9"), "::1");
        assert_eq!(host("db.example:9"), "db.example");
    }
}

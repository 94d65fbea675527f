//! Test certificates: a CA and one certificate it signs for 127.0.0.1/localhost (role
//! controller, id the prefix), usable as both server and client identity; made by walbc's
//! own certificate code; TLS clients of the tests' own that show them.

use std::path::{Path, PathBuf};

use walb_controller::walbc::certs::{write_pem, Ca};

/// PEM files written by `make`.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    /// The files `walbc gen-certs` wrote into `dir` for `name` (a server id, `controller`,
    /// `monitor`).
    pub fn generated(dir: &Path, name: &str) -> Certs {
        Certs {
            ca: dir.join(walb_controller::walbc::certs::CA_CERT),
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        }
    }

    /// The walbc/daemon flags for these files.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
            "--tls-ca".into(),
            self.ca.display().to_string(),
        ]
    }
}

/// Writes `<prefix>-ca.pem`, `<prefix>-cert.pem`, `<prefix>-key.pem` under `dir`.
pub fn make(dir: &Path, prefix: &str) -> Certs {
    let ca = Ca::new(&format!("{prefix} test CA")).unwrap();
    let (cert, key) = ca
        .issue(
            &["localhost".to_string(), "127.0.0.1".to_string()],
            Some(("controller", prefix)),
        )
        .unwrap();
    let certs = Certs {
        ca: dir.join(format!("{prefix}-ca.pem")),
        cert: dir.join(format!("{prefix}-cert.pem")),
        key: dir.join(format!("{prefix}-key.pem")),
    };
    write_pem(&certs.ca, &ca.cert_pem(), false).unwrap();
    write_pem(&certs.cert, &cert, false).unwrap();
    write_pem(&certs.key, &key, true).unwrap();
    certs
}

/// A gRPC channel to `addr` (127.0.0.1:port) showing these certificates, made for one test
/// (the process-wide transport of `walb_proto::wire` is not touched).
pub async fn channel(addr: &str, certs: &Certs) -> tonic::transport::Channel {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |p: &Path| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&certs.ca)))
        .identity(Identity::from_pem(read(&certs.cert), read(&certs.key)));
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e:?}"))
}

/// The certificate (DER) the server at `addr` (127.0.0.1:port) shows a new connection, taken
/// with these certificates as the client's.
pub async fn served_cert(addr: &str, certs: &Certs) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&certs.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&certs.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&certs.key).unwrap();
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = addr.rsplit_once(':').unwrap().0.to_string();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS to {addr}: {e}"));
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// The serial (hex) of a certificate, DER or the first of a PEM file.
pub fn serial(der: &[u8]) -> String {
    walb_proto::wire::x509_serial_and_end(der).unwrap().0
}

/// The DER of the first certificate of a PEM file.
pub fn der_of(pem: &Path) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

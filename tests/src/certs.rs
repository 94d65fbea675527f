//! Test certificates: a CA and one certificate it signs for 127.0.0.1/localhost (role
//! controller, id the prefix), usable as both server and client identity; made by walbc's
//! own certificate code.

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

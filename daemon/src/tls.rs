//! The TLS flags every daemon takes: all three, or none for plain TCP.

use std::path::PathBuf;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// This server's certificate (PEM); with --tls-key and --tls-ca turns on TLS for every
    /// connection in and out, and makes clients show a certificate signed by the CA.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) that signs every server's and client's certificate.
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// True when any TLS file is given (`init` then insists on all three).
    pub fn is_set(&self) -> bool {
        self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_ca.is_some()
    }

    /// Sets the process's transport; call once before serving or connecting.
    pub fn init(&self) -> anyhow::Result<()> {
        let files = walb_proto::wire::tls_files(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_ca.clone(),
        )?;
        walb_proto::wire::init_tls(files.as_ref())?;
        Ok(())
    }
}

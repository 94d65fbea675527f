//! The TLS flags every daemon takes (all three, or none for plain TCP), and reloading their
//! files (`rotate-certs`, SIGHUP).

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

/// Reloads the certificate, key and CA from their paths (`walb_proto::wire::reload_tls`) for
/// `why` (the command or signal); logged either way. A failure keeps the old ones and is an
/// error naming why.
pub fn rotate(why: &str) -> crate::CmdResult<String> {
    match walb_proto::wire::reload_tls() {
        Ok(cert) => {
            tracing::info!("{why}: reloaded the certificate, key and CA: {cert}");
            Ok(format!("reloaded: {cert}"))
        }
        Err(e) => {
            tracing::error!("{why}: certificate reload failed, the old certificate stays: {e}");
            Err(crate::CmdError::State(format!(
                "certificate reload failed, the old certificate stays: {e}"
            )))
        }
    }
}

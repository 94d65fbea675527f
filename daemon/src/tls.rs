//! Reloading the TLS files (`rotate-certs`, SIGHUP); the flags are `walb_proto::wire::TlsArgs`.

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

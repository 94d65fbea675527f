//! Handing descriptors to a worker: the supervisor sends the FUSE connection and the control
//! socket's listener with SCM_RIGHTS over a unix socket pair, with one line of text (the
//! negotiated INIT, the restart count). The worker answers on the same pair when it asks for
//! an upgrade (docs/wdev.md, "Restarts").

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("handover socket: {0}")]
    Sys(#[from] nix::Error),
    #[error("handover message: {0}")]
    Bad(String),
}

/// Sends `fds` and `text` (at most 4 KiB) in one message.
pub fn send(sock: &UnixStream, fds: &[RawFd], text: &str) -> Result<(), HandoverError> {
    let iov = [IoSlice::new(text.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(fds)];
    sendmsg::<()>(sock.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)?;
    Ok(())
}

/// Receives one message sent by [`send`]: its descriptors (close-on-exec) and text.
pub fn recv(sock: &UnixStream) -> Result<(Vec<OwnedFd>, String), HandoverError> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(got) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this process; nothing
            // else owns them.
            fds.extend(
                got.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    if n == 0 {
        return Err(HandoverError::Bad("closed".into()));
    }
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    Ok((fds, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn a_descriptor_and_text_cross_the_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"handed over").unwrap();
        send(&a, &[f.as_raw_fd()], "restarts=3").unwrap();
        drop(f);
        let (fds, text) = recv(&b).unwrap();
        assert_eq!(text, "restarts=3");
        assert_eq!(fds.len(), 1);
        let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "handed over");
    }
}

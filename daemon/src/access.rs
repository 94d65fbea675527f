//! The one table of who may do what (docs/security.md): every control command (by its typed
//! request: one exhaustive match per service, so a command without a rule does not compile):
//! whether it changes state (then it goes to the audit log), whether it deletes backups (then
//! a `--protect`ed archive wants `--confirm VOL`), which volume it names, and which
//! certificate roles may run it; and the data flows, by gRPC method: which roles may send
//! them. Roles are checked with TLS.

use walb_proto::storage_request as sr;
use walb_proto::{archive_request as ar, control_request as cr, proxy_request as pr};

/// What the daemon knows of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule<'a> {
    /// The command's name (walbc's word for it), for logs and the audit log.
    pub word: &'static str,
    /// Changes state: recorded in the audit log.
    pub changes: bool,
    /// The volume it names, if any.
    pub vol: Option<&'a str>,
    /// The roles (`walb://role/<role>/…` in the client certificate) that may run it.
    pub roles: &'static [&'static str],
    /// Deletes backups: refused by a protected archive without the confirmation.
    pub destroys: bool,
}

/// walbc, which runs every command.
const CONTROLLER: &[&str] = &["controller"];
/// Replication: an archive drives another archive's volume (`walb_archive::repl`): it may make
/// the volume, read it and stop it, never delete it.
const REPLICATION: &[&str] = &["controller", "archive"];
/// Every role.
const EVERYONE: &[&str] = &["controller", "monitor", "storage", "proxy", "archive"];

/// A read-only command `roles` may run.
const fn read<'a>(word: &'static str, roles: &'static [&'static str]) -> Rule<'a> {
    Rule {
        word,
        changes: false,
        vol: None,
        roles,
        destroys: false,
    }
}

/// A state-changing command on `vol` (empty: none), for `roles`.
fn change<'a>(word: &'static str, vol: &'a str, roles: &'static [&'static str]) -> Rule<'a> {
    Rule {
        word,
        changes: true,
        vol: Some(vol).filter(|v| !v.is_empty()),
        roles,
        destroys: false,
    }
}

/// A command that deletes backups of `vol` when `destroys`: walbc's alone, and confirmed on a
/// protected archive.
fn destroy<'a>(word: &'static str, vol: &'a str, destroys: bool) -> Rule<'a> {
    Rule {
        destroys,
        ..change(word, vol, CONTROLLER)
    }
}

impl<'a> Rule<'a> {
    /// A read that names a volume.
    fn of(self, vol: &'a str) -> Rule<'a> {
        Rule {
            vol: Some(vol).filter(|v| !v.is_empty()),
            ..self
        }
    }
}

/// The rule of a command.
pub trait Access {
    fn rule(&self) -> Rule<'_>;
}

impl Access for cr::Cmd {
    fn rule(&self) -> Rule<'_> {
        match self {
            cr::Cmd::Hello(_) => read("version", EVERYONE),
            cr::Cmd::Shutdown(_) => change("shutdown", "", CONTROLLER),
            cr::Cmd::RotateCerts(_) => change("rotate-certs", "", CONTROLLER),
        }
    }
}

impl Access for sr::Cmd {
    fn rule(&self) -> Rule<'_> {
        use sr::Cmd as C;
        match self {
            C::InitVol(r) => change("init-vol", &r.vol, CONTROLLER),
            C::ClearVol(r) => change("clear-vol", &r.vol, CONTROLLER),
            C::ResetVol(r) => change("reset-vol", &r.vol, CONTROLLER),
            C::Start(r) => change("start", &r.vol, CONTROLLER),
            C::Stop(r) => change("stop", &r.vol, CONTROLLER),
            C::Snapshot(r) => change("snapshot", &r.vol, CONTROLLER),
            C::FullBkp(r) => change("full-bkp", &r.vol, CONTROLLER),
            C::HashBkp(r) => change("hash-bkp", &r.vol, CONTROLLER),
            C::Resize(r) => change("resize", &r.vol, CONTROLLER),
            C::SetFullScanBps(_) => change("set-full-scan-bps", "", CONTROLLER),
            C::Cancel(r) => change("cancel", &r.vol, CONTROLLER),
            C::Kick(_) => change("kick", "", CONTROLLER),
            C::Status(r) => read("status", EVERYONE).of(&r.vol),
            C::ListVols(_) => read("get vol", EVERYONE),
            C::Get(r) => read("get", EVERYONE).of(&r.vol),
            C::GetProgress(r) => read("get progress", EVERYONE).of(&r.vol),
        }
    }
}

impl Access for pr::Cmd {
    fn rule(&self) -> Rule<'_> {
        use pr::Cmd as C;
        match self {
            C::Start(r) => change("start", &r.vol, CONTROLLER),
            C::Stop(r) => change("stop", &r.vol, CONTROLLER),
            C::ClearVol(r) => change("clear-vol", &r.vol, CONTROLLER),
            C::Kick(r) => change("kick", &r.vol, CONTROLLER),
            C::ArchiveInfoSet(r) => change("archive-info", &r.vol, CONTROLLER),
            C::ArchiveInfoDelete(r) => change("archive-info", &r.vol, CONTROLLER),
            C::ArchiveInfoList(r) => read("archive-info list", EVERYONE).of(&r.vol),
            C::ArchiveInfoGet(r) => read("archive-info get", EVERYONE).of(&r.vol),
            C::ListVols(_) => read("get vol", EVERYONE),
            C::GetState(r) => read("get state", EVERYONE).of(&r.vol),
            C::SendError(r) => read("get send-error", EVERYONE).of(&r.vol),
            C::HeldDiffs(r) => read("get proxy-diff", EVERYONE).of(&r.vol),
            C::Status(r) => read("status", EVERYONE).of(&r.vol),
        }
    }
}

impl Access for ar::Cmd {
    fn rule(&self) -> Rule<'_> {
        use ar::Cmd as C;
        match self {
            C::InitVol(r) => change("init-vol", &r.vol, REPLICATION),
            C::ClearVol(r) => destroy("clear-vol", &r.vol, true),
            C::ResetVol(r) => destroy("reset-vol", &r.vol, true),
            C::Start(r) => change("start", &r.vol, CONTROLLER),
            C::Stop(r) => change("stop", &r.vol, REPLICATION),
            C::ListVols(_) => read("get vol", EVERYONE),
            C::Capacity(_) => read("get capacity", EVERYONE),
            C::GetProgress(r) => read("get progress", EVERYONE).of(&r.vol),
            C::GetState(r) => read("get state", EVERYONE).of(&r.vol),
            C::Restorable(r) => read("get restorable", EVERYONE).of(&r.vol),
            C::Base(r) => read("get base", EVERYONE).of(&r.vol),
            C::LatestSnap(r) => read("get latest-snap", EVERYONE).of(&r.vol),
            C::Uuids(r) => read("get uuid", EVERYONE).of(&r.vol),
            C::Diffs(r) => read("get diff", EVERYONE).of(&r.vol),
            C::HasImage(r) => read("get exists-base-image", EVERYONE).of(&r.vol),
            C::Health(r) => read("get broken", EVERYONE).of(&r.vol),
            C::Restored(r) => read("get restored", EVERYONE).of(&r.vol),
            C::RepoStatus(r) => read("get repo", EVERYONE).of(&r.vol),
            C::Replicate(r) => change("replicate", &r.vol, CONTROLLER),
            C::Status(r) => read("status", EVERYONE).of(&r.vol),
            C::Restore(r) => change("restore", &r.vol, CONTROLLER),
            C::DelRestored(r) => destroy("del-restored", &r.vol, true),
            C::Apply(r) => destroy("apply", &r.vol, true),
            C::Merge(r) => destroy("merge", &r.vol, true),
            C::GcDiff(r) => change("gc-diff", &r.vol, CONTROLLER),
            C::Cat(r) => read("cat", CONTROLLER).of(&r.vol),
            C::Bhash(r) => read("bhash", CONTROLLER).of(&r.vol),
            C::Verify(r) => change("verify", &r.vol, CONTROLLER),
            C::Resize(r) => change("resize", &r.vol, CONTROLLER),
            C::DeviceHash(r) => change("device-hash", &r.vol, CONTROLLER),
            C::BindStorage(r) => change("bind-storage", &r.vol, CONTROLLER),
            C::SetSnapshots(r) if r.explicit => change("enable-snapshot", &r.vol, CONTROLLER),
            C::SetSnapshots(r) => destroy("disable-snapshot", &r.vol, true),
            C::Retention(r) => destroy("retention", &r.vol, !r.dry_run),
        }
    }
}

impl Rule<'_> {
    /// Whether a caller with `role` (None: its certificate names none) may run the command.
    pub fn allows(&self, role: Option<&str>) -> bool {
        role.is_some_and(|r| self.roles.contains(&r))
    }
}

/// A data flow (a gRPC streaming method) and the roles that may send it. The sender's Open
/// names its host type, which must be its certificate's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRule {
    /// `Service.Method` of walb.proto.
    pub flow: &'static str,
    pub senders: &'static [&'static str],
}

/// Every data flow. A storage ships its volumes' logs to a proxy and asks an archive for what
/// full and hash backup need; a proxy sends diffs to an archive; an archive replicates to
/// another archive. Controller and monitor send no data.
pub const FLOWS: &[FlowRule] = &[
    FlowRule {
        flow: "Proxy.WlogTransfer",
        senders: &["storage"],
    },
    FlowRule {
        flow: "Archive.WdiffTransfer",
        senders: &["proxy", "archive"],
    },
    FlowRule {
        flow: "Archive.FullSync",
        senders: &["storage", "archive"],
    },
    FlowRule {
        flow: "Archive.HashSync",
        senders: &["storage", "archive"],
    },
    // It overwrites a device: walbc's alone, as the commands that change a volume are.
    FlowRule {
        flow: "Storage.Failback",
        senders: &["controller"],
    },
];

/// The rule of `flow` (`Service.Method`); a flow not listed has no sender.
pub fn flow_rule(flow: &str) -> FlowRule {
    FLOWS
        .iter()
        .find(|f| f.flow == flow)
        .copied()
        .unwrap_or(FlowRule {
            flow: "",
            senders: &[],
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(c: sr::Cmd) -> sr::Cmd {
        c
    }

    #[test]
    fn reads_are_not_changes_and_name_their_volume() {
        let get = ar::Cmd::GetState(ar::GetState { vol: "vol0".into() });
        assert!(!get.rule().changes);
        assert_eq!(get.rule().vol, Some("vol0"));
        let clear = ar::Cmd::ClearVol(ar::ClearVol { vol: "vol0".into() });
        assert!(clear.rule().changes);
        assert_eq!(s(sr::Cmd::Kick(sr::Kick {})).rule().vol, None);
    }

    #[test]
    fn roles_by_the_table() {
        let v = || "vol0".to_string();
        let ar_cases = [
            (
                ar::Cmd::GetState(ar::GetState { vol: v() }),
                "monitor",
                true,
            ),
            (
                ar::Cmd::ClearVol(ar::ClearVol { vol: v() }),
                "monitor",
                false,
            ),
            (
                ar::Cmd::ClearVol(ar::ClearVol { vol: v() }),
                "controller",
                true,
            ),
            (ar::Cmd::InitVol(ar::InitVol { vol: v() }), "archive", true),
            (
                ar::Cmd::ResetVol(ar::ResetVol { vol: v() }),
                "archive",
                false,
            ),
            (ar::Cmd::InitVol(ar::InitVol { vol: v() }), "storage", false),
            (
                ar::Cmd::Cat(ar::Cat {
                    vol: v(),
                    ..Default::default()
                }),
                "monitor",
                false,
            ),
        ];
        for (cmd, role, ok) in &ar_cases {
            assert_eq!(cmd.rule().allows(Some(role)), *ok, "{role}: {cmd:?}");
        }
        let shutdown = cr::Cmd::Shutdown(cr::Shutdown { force: false });
        assert!(!shutdown.rule().allows(Some("proxy")));
        assert!(cr::Cmd::Hello(cr::Hello {}).rule().allows(Some("storage")));
        assert!(!read("get", EVERYONE).allows(None));
    }

    #[test]
    fn what_destroys_backups() {
        let v = || "vol0".to_string();
        assert!(ar::Cmd::ClearVol(ar::ClearVol { vol: v() }).rule().destroys);
        assert!(!ar::Cmd::InitVol(ar::InitVol { vol: v() }).rule().destroys);
        let ret = |dry_run| ar::Cmd::Retention(ar::Retention { vol: v(), dry_run });
        assert!(ret(false).rule().destroys);
        assert!(!ret(true).rule().destroys);
        assert_eq!(ret(false).rule().roles, CONTROLLER);
        assert_eq!(flow_rule("Proxy.WlogTransfer").senders, ["storage"]);
        assert!(flow_rule("Archive.Nothing").senders.is_empty());
    }
}

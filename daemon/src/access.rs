//! The one table of who may do what (docs/security.md): the Control commands, by the command
//! word: whether it changes state (then it goes to the audit log), whether it deletes backups
//! (then a `--protect`ed archive wants `--confirm VOL`), which argument names its volume, and
//! which certificate roles may run it; and the data flows, by gRPC method: which roles may send
//! them. Roles are checked with TLS.

/// What the daemon knows of a command word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub word: &'static str,
    /// Changes state: recorded in the audit log.
    pub changes: bool,
    /// The argument (0 = the word) that names the volume, if any.
    pub vol: Option<usize>,
    /// The roles (`walb://role/<role>/…` in the client certificate) that may run it.
    pub roles: &'static [&'static str],
    /// Deletes backups: refused by a protected archive without the confirmation.
    pub destroys: Destroys,
}

/// Whether a command deletes backups (restorable points, restored images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroys {
    No,
    Yes,
    /// Yes, unless this argument is this word (`retention VOL dry-run`).
    Unless(usize, &'static str),
}

/// walbc, which runs every command.
const CONTROLLER: &[&str] = &["controller"];
/// Replication: an archive drives another archive's volume (`walb_archive::repl`): it may make
/// the volume and stop it, never delete it.
const REPLICATION: &[&str] = &["controller", "archive"];
/// Every role.
const EVERYONE: &[&str] = &["controller", "monitor", "storage", "proxy", "archive"];

/// A read-only command `roles` may run.
const fn read(word: &'static str, roles: &'static [&'static str]) -> Rule {
    Rule {
        word,
        changes: false,
        vol: None,
        roles,
        destroys: Destroys::No,
    }
}

/// A state-changing command with its volume at `vol`, for `roles`.
const fn change(word: &'static str, vol: Option<usize>, roles: &'static [&'static str]) -> Rule {
    Rule {
        word,
        changes: true,
        vol,
        roles,
        destroys: Destroys::No,
    }
}

/// A command that deletes backups of the volume at argument 1: walbc's alone, and confirmed
/// on a protected archive.
const fn destroy(word: &'static str, destroys: Destroys) -> Rule {
    Rule {
        word,
        changes: true,
        vol: Some(1),
        roles: CONTROLLER,
        destroys,
    }
}

/// Every command word of every daemon; a word not listed counts as changing state and is
/// walbc's alone.
pub const RULES: &[Rule] = &[
    read("get", EVERYONE),
    read("status", EVERYONE),
    read("version", EVERYONE),
    read("cat", CONTROLLER),
    read("bhash", CONTROLLER),
    change("shutdown", None, CONTROLLER),
    change("set-full-scan-bps", None, CONTROLLER),
    change("kick", Some(1), CONTROLLER),
    change("archive-info", Some(2), CONTROLLER),
    change("init-vol", Some(1), REPLICATION),
    destroy("clear-vol", Destroys::Yes),
    destroy("reset-vol", Destroys::Yes),
    change("start", Some(1), CONTROLLER),
    change("stop", Some(1), REPLICATION),
    change("cancel", Some(1), CONTROLLER),
    change("snapshot", Some(1), CONTROLLER),
    change("full-bkp", Some(1), CONTROLLER),
    change("hash-bkp", Some(1), CONTROLLER),
    change("resize", Some(1), CONTROLLER),
    change("replicate", Some(1), CONTROLLER),
    change("restore", Some(1), CONTROLLER),
    destroy("del-restored", Destroys::Yes),
    destroy("apply", Destroys::Yes),
    destroy("merge", Destroys::Yes),
    change("gc-diff", Some(1), CONTROLLER),
    change("verify", Some(1), CONTROLLER),
    change("device-hash", Some(1), CONTROLLER),
    change("bind-storage", Some(1), CONTROLLER),
    destroy("retention", Destroys::Unless(2, "dry-run")),
    destroy("disable-snapshot", Destroys::Yes),
    change("rotate-certs", None, CONTROLLER),
    change("enable-snapshot", Some(1), CONTROLLER),
];

/// The rule for `args` (its first word).
pub fn rule(args: &[String]) -> Rule {
    let word = args.first().map_or("", String::as_str);
    RULES
        .iter()
        .find(|r| r.word == word)
        .copied()
        .unwrap_or(change("", None, CONTROLLER))
}

impl Rule {
    /// Whether a caller with `role` (None: its certificate names none) may run the command.
    pub fn allows(&self, role: Option<&str>) -> bool {
        role.is_some_and(|r| self.roles.contains(&r))
    }

    /// Whether `args` (this rule's command) delete backups.
    pub fn destroys(&self, args: &[String]) -> bool {
        match self.destroys {
            Destroys::No => false,
            Destroys::Yes => true,
            Destroys::Unless(i, word) => args.get(i).map(String::as_str) != Some(word),
        }
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

/// The volume `args` name, by the rule.
pub fn volume<'a>(rule: &Rule, args: &'a [String]) -> Option<&'a str> {
    rule.vol.and_then(|i| args.get(i)).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn reads_are_not_changes_and_unknown_words_are() {
        assert!(!rule(&argv("get state vol0")).changes);
        assert!(rule(&argv("clear-vol vol0")).changes);
        assert!(rule(&argv("no-such-word")).changes);
        let r = rule(&argv("archive-info add vol0 a0"));
        assert_eq!(volume(&r, &argv("archive-info add vol0 a0")), Some("vol0"));
        assert_eq!(volume(&rule(&argv("kick")), &argv("kick")), None);
    }

    #[test]
    fn roles_by_the_table() {
        let cases = [
            ("get state vol0", "monitor", true),
            ("version", "storage", true),
            ("clear-vol vol0", "monitor", false),
            ("clear-vol vol0", "controller", true),
            ("init-vol vol0", "archive", true),
            ("reset-vol vol0", "archive", false),
            ("init-vol vol0", "storage", false),
            ("cat vol0 1", "monitor", false),
            ("shutdown", "proxy", false),
            ("no-such-word", "archive", false),
        ];
        for (cmd, role, ok) in cases {
            assert_eq!(rule(&argv(cmd)).allows(Some(role)), ok, "{role}: {cmd}");
        }
        assert!(!rule(&argv("get state vol0")).allows(None));
    }

    #[test]
    fn what_destroys_backups() {
        assert!(rule(&argv("clear-vol vol0")).destroys(&argv("clear-vol vol0")));
        assert!(!rule(&argv("init-vol vol0")).destroys(&argv("init-vol vol0")));
        let r = rule(&argv("retention vol0"));
        assert!(r.destroys(&argv("retention vol0")));
        assert!(!r.destroys(&argv("retention vol0 dry-run")));
        for r in RULES.iter().filter(|r| r.destroys != Destroys::No) {
            assert_eq!(r.roles, CONTROLLER, "{}", r.word);
        }
        assert_eq!(flow_rule("Proxy.WlogTransfer").senders, ["storage"]);
        assert!(flow_rule("Archive.Nothing").senders.is_empty());
    }

    #[test]
    fn every_word_once() {
        let mut w: Vec<_> = RULES.iter().map(|r| r.word).collect();
        w.sort();
        w.dedup();
        assert_eq!(w.len(), RULES.len());
    }
}

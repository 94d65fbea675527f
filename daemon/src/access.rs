//! The one table of Control commands (docs/security.md): by the command word, whether it
//! changes state (then it goes to the audit log), which argument names its volume, and which
//! certificate roles may run it (checked with TLS).

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
}

/// walbc, which runs every command.
const CONTROLLER: &[&str] = &["controller"];
/// Replication: an archive drives another archive's volume (archive/src/repl.rs).
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
    }
}

/// A state-changing command with its volume at `vol`, for `roles`.
const fn change(word: &'static str, vol: Option<usize>, roles: &'static [&'static str]) -> Rule {
    Rule {
        word,
        changes: true,
        vol,
        roles,
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
    change("clear-vol", Some(1), CONTROLLER),
    change("reset-vol", Some(1), REPLICATION),
    change("start", Some(1), CONTROLLER),
    change("stop", Some(1), REPLICATION),
    change("cancel", Some(1), CONTROLLER),
    change("snapshot", Some(1), CONTROLLER),
    change("full-bkp", Some(1), CONTROLLER),
    change("hash-bkp", Some(1), CONTROLLER),
    change("resize", Some(1), CONTROLLER),
    change("replicate", Some(1), CONTROLLER),
    change("restore", Some(1), CONTROLLER),
    change("del-restored", Some(1), CONTROLLER),
    change("apply", Some(1), CONTROLLER),
    change("merge", Some(1), CONTROLLER),
    change("gc-diff", Some(1), CONTROLLER),
    change("verify", Some(1), CONTROLLER),
    change("device-hash", Some(1), CONTROLLER),
    change("retention", Some(1), CONTROLLER),
    change("disable-snapshot", Some(1), CONTROLLER),
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
    fn every_word_once() {
        let mut w: Vec<_> = RULES.iter().map(|r| r.word).collect();
        w.sort();
        w.dedup();
        assert_eq!(w.len(), RULES.len());
    }
}

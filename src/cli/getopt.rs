//! GNU `getopt` semantics for the drop-in tools, plus long options.
//!
//! Cyrus's tools parse with glibc's `getopt`, and scripts depend on its behaviour:
//! options may follow operands (argument permutation, unless `POSIXLY_CORRECT` is
//! set), `--` ends the options, an option argument may be attached (`-fpath`) or
//! separate (`-f path`), and errors print `prog: invalid option -- 'x'` or
//! `prog: option requires an argument -- 'f'` on stderr. This parser reproduces that
//! and yields events one at a time, so callers can act at the moment an option is
//! seen (Cyrus's `-v` exits right away, even after a bad option). Long options
//! (`--group NAME`, `--group=NAME`, or a unique abbreviation) are our extensions; an
//! argument starting with `--` that names none of them is read as Cyrus's plain
//! `getopt` reads it, a cluster of short options (`--foo` is `-` then `-f oo`:
//! `invalid option -- '-'`), so every command line Cyrus's tool takes means the same.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// A long option: its name and whether it takes an argument.
#[derive(Debug, Clone, Copy)]
pub struct LongOpt {
    /// The name without dashes.
    pub name: &'static str,
    /// Whether it requires an argument.
    pub has_arg: bool,
}

/// One thing the parser found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A short option, with its argument when it takes one.
    Short(char, Option<OsString>),
    /// A long option, with its argument when it takes one.
    Long(&'static str, Option<OsString>),
    /// An unknown short option (glibc returns `?`); the message was prepared.
    BadShort(char),
    /// A short option missing its argument.
    MissingArg(char),
    /// A long option missing its argument or given one it does not take.
    BadLong(String),
}

/// A getopt run over `args` (without `argv[0]`).
#[derive(Debug)]
pub struct Getopt<'a> {
    args: Vec<OsString>,
    shorts: &'a str,
    longs: &'a [LongOpt],
    idx: usize,
    /// Position inside a cluster of short options (`-pc`).
    sub: usize,
    operands: Vec<OsString>,
    permute: bool,
    done: bool,
}

impl<'a> Getopt<'a> {
    /// `shorts` is a getopt option string (`"vpcdnf:u:a:h?"`).
    pub fn new(args: Vec<OsString>, shorts: &'a str, longs: &'a [LongOpt]) -> Self {
        let permute = std::env::var_os("POSIXLY_CORRECT").is_none();
        Getopt {
            args,
            shorts,
            longs,
            idx: 0,
            sub: 0,
            operands: Vec::new(),
            permute,
            done: false,
        }
    }

    /// The operands, once every option has been read.
    pub fn operands(&self) -> &[OsString] {
        &self.operands
    }

    fn short_spec(&self, c: char) -> Option<bool> {
        let mut it = self.shorts.chars().peekable();
        while let Some(o) = it.next() {
            let takes = it.peek() == Some(&':');
            if takes {
                it.next();
            }
            if o == c && c != ':' {
                return Some(takes);
            }
        }
        None
    }

    /// The long option `--body` names, or None when it names none of ours (nothing
    /// is consumed then).
    fn long(&mut self, body: &OsStr) -> Option<Event> {
        let bytes = body.as_bytes();
        let (name, inline) = match bytes.iter().position(|&b| b == b'=') {
            Some(p) => (
                &bytes[..p],
                Some(OsStr::from_bytes(&bytes[p + 1..]).to_os_string()),
            ),
            None => (bytes, None),
        };
        // Exact match first, then a unique prefix (getopt_long's abbreviations).
        let exact = self.longs.iter().find(|l| l.name.as_bytes() == name);
        let found = exact.copied().or_else(|| {
            let mut m = self
                .longs
                .iter()
                .filter(|l| l.name.as_bytes().starts_with(name));
            match (m.next(), m.next()) {
                (Some(l), None) if !name.is_empty() => Some(*l),
                _ => None,
            }
        });
        let opt = found?;
        Some(match (opt.has_arg, inline) {
            (true, Some(v)) => Event::Long(opt.name, Some(v)),
            (true, None) => {
                if self.idx < self.args.len() {
                    let v = self.args[self.idx].clone();
                    self.idx += 1;
                    Event::Long(opt.name, Some(v))
                } else {
                    Event::BadLong(format!("option '--{}' requires an argument", opt.name))
                }
            }
            (false, Some(_)) => {
                Event::BadLong(format!("option '--{}' doesn't allow an argument", opt.name))
            }
            (false, None) => Event::Long(opt.name, None),
        })
    }
}

impl Iterator for Getopt<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if self.done {
                return None;
            }
            if self.sub > 0 {
                let arg = self.args[self.idx - 1].clone();
                let bytes = arg.as_bytes();
                if self.sub < bytes.len() {
                    let c = bytes[self.sub] as char;
                    self.sub += 1;
                    return Some(match self.short_spec(c) {
                        None => Event::BadShort(c),
                        Some(false) => Event::Short(c, None),
                        Some(true) => {
                            let rest = &bytes[self.sub..];
                            self.sub = 0;
                            if !rest.is_empty() {
                                Event::Short(c, Some(OsStr::from_bytes(rest).to_os_string()))
                            } else if self.idx < self.args.len() {
                                let v = self.args[self.idx].clone();
                                self.idx += 1;
                                Event::Short(c, Some(v))
                            } else {
                                Event::MissingArg(c)
                            }
                        }
                    });
                }
                self.sub = 0;
            }
            let Some(arg) = self.args.get(self.idx).cloned() else {
                self.done = true;
                return None;
            };
            self.idx += 1;
            let b = arg.as_bytes();
            if b == b"--" {
                self.operands.extend(self.args[self.idx..].iter().cloned());
                self.done = true;
                return None;
            }
            if b.len() > 2
                && b.starts_with(b"--")
                && let Some(ev) = self.long(OsStr::from_bytes(&b[2..]))
            {
                return Some(ev);
            }
            if b.len() > 1 && b[0] == b'-' {
                self.sub = 1;
                continue;
            }
            // An operand ("-" alone is one too).
            self.operands.push(arg);
            if !self.permute {
                self.operands.extend(self.args[self.idx..].iter().cloned());
                self.done = true;
                return None;
            }
        }
    }
}

/// glibc's message for an event that is an error, prefixed with `argv0`.
pub fn error_message(argv0: &str, ev: &Event) -> Option<String> {
    match ev {
        Event::BadShort('?') => None, // `?` is in Cyrus's option strings: no message
        Event::BadShort(c) => Some(format!("{argv0}: invalid option -- '{c}'")),
        Event::MissingArg(c) => Some(format!("{argv0}: option requires an argument -- '{c}'")),
        Event::BadLong(m) => Some(format!("{argv0}: {m}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], longs: &[LongOpt]) -> (Vec<Event>, Vec<String>) {
        let args = args.iter().map(OsString::from).collect();
        let mut g = Getopt::new(args, "vpcdnf:u:a:h?", longs);
        let evs: Vec<Event> = g.by_ref().collect();
        let ops = g
            .operands()
            .iter()
            .map(|o| o.to_string_lossy().into_owned())
            .collect();
        (evs, ops)
    }

    fn s(c: char, a: Option<&str>) -> Event {
        Event::Short(c, a.map(OsString::from))
    }

    #[test]
    fn permutation_and_clusters() {
        let (ev, ops) = run(&["alice", "-pc", "-fdb", "-u", "dom", "-n"], &[]);
        assert_eq!(
            ev,
            [
                s('p', None),
                s('c', None),
                s('f', Some("db")),
                s('u', Some("dom")),
                s('n', None)
            ]
        );
        assert_eq!(ops, ["alice"]);
    }

    #[test]
    fn double_dash_and_single_dash() {
        let (ev, ops) = run(&["-p", "--", "-c", "x"], &[]);
        assert_eq!(ev, [s('p', None)]);
        assert_eq!(ops, ["-c", "x"]);
        let (_, ops) = run(&["-", "-p"], &[]);
        assert_eq!(ops, ["-"]);
    }

    #[test]
    fn errors() {
        let (ev, _) = run(&["-x", "-f"], &[]);
        assert_eq!(ev, [Event::BadShort('x'), Event::MissingArg('f')]);
        assert_eq!(
            error_message("saslpasswd2", &ev[0]).unwrap(),
            "saslpasswd2: invalid option -- 'x'"
        );
        assert_eq!(
            error_message("saslpasswd2", &ev[1]).unwrap(),
            "saslpasswd2: option requires an argument -- 'f'"
        );
        let (ev, _) = run(&["-?", "-h"], &[]);
        assert_eq!(ev, [s('?', None), s('h', None)]);
    }

    #[test]
    fn long_options() {
        let longs = [
            LongOpt {
                name: "group",
                has_arg: true,
            },
            LongOpt {
                name: "scram",
                has_arg: false,
            },
        ];
        let (ev, ops) = run(
            &["--group=mail", "u", "--gr", "x", "--scram", "--nope"],
            &longs,
        );
        assert_eq!(
            ev,
            [
                Event::Long("group", Some("mail".into())),
                Event::Long("group", Some("x".into())),
                Event::Long("scram", None),
                // Not ours: glibc's plain getopt's cluster `-`, `n`, `o`, `p`, `e`.
                Event::BadShort('-'),
                s('n', None),
                Event::BadShort('o'),
                s('p', None),
                Event::BadShort('e'),
            ]
        );
        assert_eq!(ops, ["u"]);
        assert_eq!(
            error_message("saslpasswd2", &Event::BadShort('-')).unwrap(),
            "saslpasswd2: invalid option -- '-'"
        );
        // `--foo`: `-` then `-f oo`.
        let (ev, ops) = run(&["--foo", "-f", "db", "--x", "u"], &longs);
        assert_eq!(
            ev,
            [
                Event::BadShort('-'),
                s('f', Some("oo")),
                s('f', Some("db")),
                Event::BadShort('-'),
                Event::BadShort('x'),
            ]
        );
        assert_eq!(ops, ["u"]);
        let (ev, _) = run(&["--scram=1", "--group"], &longs);
        assert!(matches!(&ev[0], Event::BadLong(m) if m.contains("doesn't allow")));
        assert!(matches!(&ev[1], Event::BadLong(m) if m.contains("requires")));
    }
}

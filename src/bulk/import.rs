//! Bulk import: parsing user lists and applying them in one transaction.
//!
//! Three input formats:
//! - lines `user[@realm]:password`: the first `:` splits, so the password may contain
//!   `:`; blank lines and lines starting with `#` are skipped; a CRLF line ending is a
//!   line ending (the CR is not part of the password);
//! - CSV with a header naming the columns `user`, `realm`, `password` (any order;
//!   RFC 4180 quoting; an empty realm means the default realm);
//! - JSON: an array of objects `{"user", "realm"?, "password"?, "properties"?}`, the
//!   shape `sasldb export --json` writes; `properties` may carry stored secrets
//!   (strings, or `{"base64": ...}` for bytes) to restore verbatim, so pre-hashed
//!   secrets (SCRAM `authPassword`) can be imported without any plaintext.
//!
//! Parsing never stops at a bad entry: every problem is collected with its line number
//! ([`Rejected`]), and callers decide (by default nothing is written when anything was
//! rejected). [`apply`] then writes the entries into a [`Transaction`] with one of
//! three [`Mode`]s.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use zeroize::Zeroizing;

use crate::account::{self, NameProblem, Outcome, SecretPolicy, check_names, check_password};
use crate::database::Transaction;
use crate::error::Result;
use crate::record::{AUTH_PASSWORD, Key, OTP_SECRET, USER_PASSWORD, user_prefix};
use crate::record::{MAX_SECRET_LEN, Secret};

/// The input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `user[@realm]:password` lines.
    Lines,
    /// CSV with a `user,realm,password` header.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// One user to import.
pub struct Entry {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The user name.
    pub user: Vec<u8>,
    /// The realm, when the input gives one.
    pub realm: Option<Vec<u8>>,
    /// The plaintext password, when given.
    pub password: Option<Secret>,
    /// Stored properties to write verbatim (JSON only).
    pub properties: Vec<(Vec<u8>, Secret)>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("line", &self.line)
            .field("user", &String::from_utf8_lossy(&self.user))
            .field("realm", &self.realm.as_deref().map(String::from_utf8_lossy))
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("properties", &self.properties.len())
            .finish()
    }
}

/// An entry that was refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// 1-based line.
    pub line: usize,
    /// One-line reason (never contains the password).
    pub reason: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The result of parsing.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Entries that passed every check.
    pub entries: Vec<Entry>,
    /// Entries that did not.
    pub rejected: Vec<Rejected>,
}

/// Parses `input` in `format`. Every entry is checked: user and realm names (not empty,
/// at most 255 bytes, no control characters, UTF-8), the password (not empty, no NUL,
/// no trailing CR, at most 1023 bytes).
pub fn parse(input: &[u8], format: InputFormat) -> Parsed {
    match format {
        InputFormat::Lines => parse_lines(input),
        InputFormat::Csv => parse_csv(input),
        InputFormat::Json => parse_json(input),
    }
}

/// Builds an entry from its fields, or says what is wrong with it.
fn entry(
    line: usize,
    user: &[u8],
    realm: Option<&[u8]>,
    password: Option<&[u8]>,
) -> std::result::Result<Entry, String> {
    // Without an explicit realm, user@realm is split at the first @ like saslpasswd2.
    let (user, realm) = match realm {
        Some(r) => {
            if user.contains(&b'@') {
                return Err("the user name contains @ although a realm is given".into());
            }
            (user, Some(r))
        }
        None => match user.iter().position(|&b| b == b'@') {
            Some(at) => {
                let r = &user[at + 1..];
                if r.is_empty() {
                    return Err("the realm after @ is empty".into());
                }
                (&user[..at], Some(r))
            }
            None => (user, None),
        },
    };
    check_names(user, realm.unwrap_or(b"r")).map_err(|p| match p {
        NameProblem::EmptyUser => "the user name is empty".to_string(),
        other => other.to_string(),
    })?;
    if let Some(pw) = password {
        check_password(pw).map_err(|p| p.to_string())?;
    }
    Ok(Entry {
        line,
        user: user.to_vec(),
        realm: realm.map(<[u8]>::to_vec),
        password: password.map(|p| Zeroizing::new(p.to_vec())),
        properties: Vec::new(),
    })
}

fn parse_lines(input: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    for (i, raw) in input.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() || raw.first() == Some(&b'#') {
            continue;
        }
        let Some(colon) = raw.iter().position(|&b| b == b':') else {
            out.rejected.push(Rejected {
                line,
                reason: "no `:` between user and password".into(),
            });
            continue;
        };
        match entry(line, &raw[..colon], None, Some(&raw[colon + 1..])) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.rejected.push(Rejected { line, reason }),
        }
    }
    out
}

/// One CSV record: its fields and the line it starts on.
struct CsvRecord {
    line: usize,
    fields: Vec<Zeroizing<Vec<u8>>>,
}

/// An upper bound of the length of the CSV field starting at `i`, so that its buffer is
/// allocated once: a buffer that grows leaves copies of a password in freed memory.
fn field_len_bound(input: &[u8], i: usize) -> usize {
    let rest = input.get(i..).unwrap_or_default();
    if rest.first() == Some(&b'"') {
        let mut j = 1;
        while j < rest.len() {
            if rest[j] == b'"' {
                if rest.get(j + 1) != Some(&b'"') {
                    return j;
                }
                j += 1;
            }
            j += 1;
        }
        rest.len()
    } else {
        memchr::memchr2(b',', b'\n', rest).unwrap_or(rest.len())
    }
}

/// An RFC 4180 reader: fields separated by `,`, records by LF or CRLF, fields in
/// double quotes may hold commas, newlines and `""` for a quote.
fn csv_records(input: &[u8]) -> std::result::Result<Vec<CsvRecord>, Rejected> {
    let mut records = Vec::new();
    let (mut i, mut line) = (0usize, 1usize);
    while i < input.len() {
        let start_line = line;
        let mut fields = Vec::new();
        loop {
            let mut field = Zeroizing::new(Vec::with_capacity(field_len_bound(input, i)));
            if input.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match input.get(i) {
                        None => {
                            return Err(Rejected {
                                line: start_line,
                                reason: "unterminated quoted field".into(),
                            });
                        }
                        Some(b'"') if input.get(i + 1) == Some(&b'"') => {
                            field.push(b'"');
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            if c == b'\n' {
                                line += 1;
                            }
                            field.push(c);
                            i += 1;
                        }
                    }
                }
                match input.get(i) {
                    None | Some(b',') | Some(b'\n') => {}
                    Some(b'\r') if matches!(input.get(i + 1), None | Some(b'\n')) => {}
                    Some(_) => {
                        return Err(Rejected {
                            line,
                            reason: "text after a closing quote".into(),
                        });
                    }
                }
            } else {
                while let Some(&c) = input.get(i) {
                    if c == b',' || c == b'\n' {
                        break;
                    }
                    if c == b'"' {
                        return Err(Rejected {
                            line,
                            reason: "a quote inside an unquoted field".into(),
                        });
                    }
                    field.push(c);
                    i += 1;
                }
                if field.last() == Some(&b'\r') && matches!(input.get(i), None | Some(b'\n')) {
                    field.pop();
                }
            }
            if input.get(i) == Some(&b'\r') {
                i += 1;
            }
            fields.push(field);
            match input.get(i) {
                Some(b',') => i += 1,
                Some(b'\n') => {
                    i += 1;
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty();
        if !blank {
            records.push(CsvRecord {
                line: start_line,
                fields,
            });
        }
    }
    Ok(records)
}

fn parse_csv(input: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let records = match csv_records(input) {
        Ok(r) => r,
        Err(rej) => {
            out.rejected.push(rej);
            return out;
        }
    };
    let Some((header, rows)) = records.split_first() else {
        out.rejected.push(Rejected {
            line: 1,
            reason: "empty input: no CSV header".into(),
        });
        return out;
    };
    let mut cols: HashMap<String, usize> = HashMap::new();
    for (i, f) in header.fields.iter().enumerate() {
        let name = String::from_utf8_lossy(f).trim().to_ascii_lowercase();
        let name = name.trim_start_matches('\u{feff}').to_string();
        if !["user", "realm", "password"].contains(&name.as_str()) {
            // The field is not echoed: without a header line it is a user's data,
            // perhaps a password.
            out.rejected.push(Rejected {
                line: header.line,
                reason: format!(
                    "unknown CSV column {} in the header (expected user, realm, password; \
                     is the header line missing?)",
                    i + 1
                ),
            });
            return out;
        }
        if cols.insert(name.clone(), i).is_some() {
            out.rejected.push(Rejected {
                line: header.line,
                reason: format!("column `{}` appears twice", name.escape_debug()),
            });
            return out;
        }
    }
    let (Some(&u), Some(&p)) = (cols.get("user"), cols.get("password")) else {
        out.rejected.push(Rejected {
            line: header.line,
            reason: "the CSV header must name the columns user and password (and realm)".into(),
        });
        return out;
    };
    let r = cols.get("realm").copied();
    for rec in rows {
        if rec.fields.len() != header.fields.len() {
            out.rejected.push(Rejected {
                line: rec.line,
                reason: format!(
                    "{} fields, the header has {}",
                    rec.fields.len(),
                    header.fields.len()
                ),
            });
            continue;
        }
        let realm = r.map(|r| &rec.fields[r][..]).filter(|r| !r.is_empty());
        match entry(rec.line, &rec.fields[u], realm, Some(&rec.fields[p])) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.rejected.push(Rejected {
                line: rec.line,
                reason,
            }),
        }
    }
    out
}

/// Byte offsets of each top-level element of a JSON array (the text must be a
/// well-formed array; serde checks each element afterwards).
fn json_elements(input: &[u8]) -> std::result::Result<Vec<(usize, usize)>, String> {
    let ws = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut i = 0;
    if input.starts_with("\u{feff}".as_bytes()) {
        i = 3;
    }
    while i < input.len() && ws(input[i]) {
        i += 1;
    }
    if input.get(i) != Some(&b'[') {
        return Err("the JSON input must be an array of objects".into());
    }
    i += 1;
    let mut elems = Vec::new();
    loop {
        while i < input.len() && ws(input[i]) {
            i += 1;
        }
        match input.get(i) {
            Some(b']') if elems.is_empty() => return Ok(elems),
            None => return Err("unexpected end of the JSON input".into()),
            _ => {}
        }
        let start = i;
        let (mut depth, mut in_str, mut esc) = (0i64, false, false);
        while let Some(&c) = input.get(i) {
            if in_str {
                if esc {
                    esc = false;
                } else if c == b'\\' {
                    esc = true;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth > 0 => depth -= 1,
                    b',' | b']' if depth == 0 => break,
                    _ => {}
                }
            }
            i += 1;
        }
        let end = i;
        elems.push((start, end));
        match input.get(i) {
            Some(b',') => i += 1,
            Some(b']') => {
                i += 1;
                while i < input.len() && ws(input[i]) {
                    i += 1;
                }
                if i != input.len() {
                    return Err("text after the JSON array".into());
                }
                return Ok(elems);
            }
            _ => return Err("unexpected end of the JSON input".into()),
        }
    }
}

fn line_of(input: &[u8], offset: usize) -> usize {
    1 + memchr::memchr_iter(b'\n', &input[..offset]).count()
}

/// A JSON string value, or `{"base64": "..."}` for bytes. Takes the value, so the
/// string's buffer becomes the secret (wiped on drop) instead of being copied.
fn json_bytes(v: serde_json::Value) -> std::result::Result<Secret, String> {
    use base64::Engine;
    match v {
        serde_json::Value::String(s) => Ok(Zeroizing::new(s.into_bytes())),
        serde_json::Value::Object(mut o) if o.len() == 1 => match o.remove("base64") {
            Some(serde_json::Value::String(b)) => base64::engine::general_purpose::STANDARD
                .decode(Zeroizing::new(b).as_bytes())
                .map(Zeroizing::new)
                // The decoder's message quotes an offending byte of the secret.
                .map_err(|_| "not valid base64".to_string()),
            _ => Err("expected a string or {\"base64\": ...}".into()),
        },
        _ => Err("expected a string or {\"base64\": ...}".into()),
    }
}

fn json_entry(line: usize, v: serde_json::Value) -> std::result::Result<Entry, String> {
    let serde_json::Value::Object(mut o) = v else {
        return Err("each element must be an object".into());
    };
    let text = |o: &mut serde_json::Map<String, serde_json::Value>,
                k: &str|
     -> std::result::Result<Option<Zeroizing<String>>, String> {
        match o.remove(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(Zeroizing::new(s))),
            Some(_) => Err(format!("`{k}` must be a string")),
        }
    };
    let user = text(&mut o, "user")?.ok_or("missing `user`")?;
    let realm = text(&mut o, "realm")?;
    let password = text(&mut o, "password")?;
    let mut props = Vec::new();
    match o.remove("properties") {
        None | Some(serde_json::Value::Null) | Some(serde_json::Value::Array(_)) => {}
        Some(serde_json::Value::Object(map)) => {
            for (name, value) in map {
                if name.is_empty() || name.contains('\0') {
                    return Err("a property name is empty or contains NUL".into());
                }
                let bytes = json_bytes(value)
                    .map_err(|e| format!("property `{}`: {e}", name.escape_debug()))?;
                if bytes.len() > MAX_SECRET_LEN * 8 {
                    return Err(format!(
                        "property `{}` is too long: {} bytes",
                        name.escape_debug(),
                        bytes.len()
                    ));
                }
                props.push((name.into_bytes(), bytes));
            }
        }
        Some(_) => return Err("`properties` must be an object or a list".into()),
    }
    if let Some(k) = o.keys().next() {
        return Err(format!(
            "unknown key `{}` (expected user, realm, password, properties)",
            k.escape_debug()
        ));
    }
    let realm_ref = realm
        .as_ref()
        .map(|r| r.as_bytes())
        .filter(|r| !r.is_empty());
    // `password` wins over a `userPassword` property; otherwise that property is the
    // password (so an export with secrets imports back as it was).
    let pw_from_props = props
        .iter()
        .position(|(n, _)| n == USER_PASSWORD.as_bytes())
        .map(|i| props.remove(i).1);
    let password_bytes: Option<Secret> = match (&password, pw_from_props) {
        (Some(p), _) => Some(Zeroizing::new(p.as_bytes().to_vec())),
        (None, from_props) => from_props,
    };
    if password_bytes.is_none() && props.is_empty() {
        return Err("no `password` (and no stored properties)".into());
    }
    let mut e = entry(
        line,
        user.as_bytes(),
        realm_ref,
        password_bytes.as_deref().map(|v| &v[..]),
    )?;
    e.properties = props;
    Ok(e)
}

fn parse_json(input: &[u8]) -> Parsed {
    let mut out = Parsed::default();
    let elems = match json_elements(input) {
        Ok(e) => e,
        Err(reason) => {
            out.rejected.push(Rejected { line: 1, reason });
            return out;
        }
    };
    for (start, end) in elems {
        let line = line_of(input, start);
        let value: serde_json::Value = match serde_json::from_slice(&input[start..end]) {
            Ok(v) => v,
            Err(e) => {
                out.rejected.push(Rejected {
                    line,
                    reason: format!("invalid JSON: {e}"),
                });
                continue;
            }
        };
        match json_entry(line, value) {
            Ok(e) => out.entries.push(e),
            Err(reason) => out.rejected.push(Rejected { line, reason }),
        }
    }
    out
}

/// How an import treats the existing users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Add new users, update existing ones, leave other users alone.
    Upsert,
    /// Add new users; existing users are left exactly as they are.
    CreateOnly,
    /// The database ends up holding exactly the input: other users are removed.
    ReplaceAll,
}

/// What an import did (or would do, in a dry run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// New users.
    pub added: usize,
    /// Existing users whose secrets changed.
    pub updated: usize,
    /// Existing users whose secrets already matched.
    pub unchanged: usize,
    /// Existing users left alone in create-only mode.
    pub kept: usize,
    /// Users removed in replace-all mode.
    pub removed: usize,
    /// Entries refused.
    pub rejected: usize,
}

/// The properties a password change manages; replace-all drops any other property of
/// an imported user, so the database holds exactly the input.
const MANAGED: [&str; 3] = [USER_PASSWORD, AUTH_PASSWORD, OTP_SECRET];

/// Applies parsed entries to `txn`. Entries without a realm get `default_realm`. A
/// second entry for the same user@realm is rejected (the first one wins). `progress`
/// is called with the number of entries done so far.
pub fn apply(
    txn: &mut Transaction,
    entries: Vec<Entry>,
    mode: Mode,
    policy: &SecretPolicy,
    default_realm: &[u8],
    progress: &mut dyn FnMut(usize),
) -> Result<(Summary, Vec<Rejected>)> {
    let mut summary = Summary::default();
    let mut rejected = Vec::new();
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::with_capacity(entries.len());
    let mut wanted = Vec::with_capacity(entries.len());
    for e in entries {
        let realm = e.realm.clone().unwrap_or_else(|| default_realm.to_vec());
        let prefix = user_prefix(&e.user, &realm);
        if let Some(first) = seen.get(&prefix) {
            rejected.push(Rejected {
                line: e.line,
                reason: format!(
                    "{}@{} appears again (first on line {first})",
                    String::from_utf8_lossy(&e.user),
                    String::from_utf8_lossy(&realm)
                ),
            });
            continue;
        }
        seen.insert(prefix, e.line);
        wanted.push((e, realm));
    }

    if mode == Mode::ReplaceAll {
        // Every user (and malformed key) not in the input goes away.
        let mut gone: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut stray = Vec::new();
        for k in txn.base_keys_sorted()? {
            match crate::record::KeyRef::parse(k) {
                Ok(kr) => {
                    let prefix = user_prefix(kr.user, kr.realm);
                    if !seen.contains_key(&prefix) {
                        gone.insert(prefix);
                        stray.push(k.clone());
                    } else if !MANAGED.iter().any(|m| m.as_bytes() == kr.property) {
                        stray.push(k.clone());
                    }
                }
                Err(_) => stray.push(k.clone()),
            }
        }
        summary.removed = gone.len();
        for k in stray {
            txn.delete_raw(k);
        }
    }

    let fresh = !txn.existed() && txn.is_empty();
    if !fresh {
        // One read for every user where each lookup is a round trip (PostgreSQL).
        txn.prefetch_users(wanted.iter().map(|(e, realm)| (&e.user[..], &realm[..])))?;
    }
    for (n, (e, realm)) in wanted.into_iter().enumerate() {
        if n % 1024 == 0 {
            progress(n);
        }
        // Into a new database with nothing else pending, every (unique) user is new.
        let props = if fresh {
            Vec::new()
        } else {
            txn.properties(&e.user, &realm)?
        };
        let exists = !props.is_empty();
        if exists && mode == Mode::CreateOnly {
            summary.kept += 1;
            continue;
        }
        let mut outcome = match &e.password {
            Some(pw) => account::set_password_with_props(txn, &e.user, &realm, pw, policy, &props)?,
            None if exists => Outcome::Unchanged,
            None => Outcome::Added,
        };
        for (name, value) in &e.properties {
            let key = Key::new(&e.user, &realm, name)?;
            if txn.get(&key)?.as_deref() != Some(value) {
                txn.put(&key, value.clone());
                if outcome == Outcome::Unchanged {
                    outcome = Outcome::Updated;
                }
            }
        }
        match outcome {
            Outcome::Added => summary.added += 1,
            Outcome::Updated => summary.updated += 1,
            Outcome::Unchanged => summary.unchanged += 1,
        }
    }
    summary.rejected = rejected.len();
    Ok((summary, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &Parsed) -> Vec<(String, Option<String>, Option<String>)> {
        p.entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.user).into_owned(),
                    e.realm
                        .as_deref()
                        .map(|r| String::from_utf8_lossy(r).into_owned()),
                    e.password
                        .as_deref()
                        .map(|p| String::from_utf8_lossy(p).into_owned()),
                )
            })
            .collect()
    }

    fn s(a: &str, r: Option<&str>, p: &str) -> (String, Option<String>, Option<String>) {
        (a.into(), r.map(Into::into), Some(p.into()))
    }

    #[test]
    fn lines_format() {
        let p = parse(
            b"alice:pw:with:colons\r\n\n# comment\nbob@example.org:x\nnocolon\n:empty-user\ncarol:\n@r:pw\nd@:pw\n",
            InputFormat::Lines,
        );
        assert_eq!(
            ok(&p),
            [
                s("alice", None, "pw:with:colons"),
                s("bob", Some("example.org"), "x")
            ]
        );
        let lines: Vec<usize> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [5, 6, 7, 8, 9]);
        assert!(p.rejected[0].reason.contains("no `:`"));
        assert!(p.rejected[2].reason.contains("password is empty"));
    }

    #[test]
    fn lines_bad_fields() {
        let long_user = format!("{}:pw\n", "u".repeat(300));
        let long_pw = format!("u:{}\n", "p".repeat(2000));
        let input = [
            b"nul:p\0w\n".to_vec(),
            long_user.into_bytes(),
            long_pw.into_bytes(),
            b"\xff\xfe:pw\n".to_vec(),
            b"cr:pw\r\r\n".to_vec(),
        ]
        .concat();
        let p = parse(&input, InputFormat::Lines);
        assert!(p.entries.is_empty());
        let reasons: Vec<&str> = p.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert!(reasons[0].contains("NUL"), "{reasons:?}");
        assert!(reasons[1].contains("too long"));
        assert!(reasons[2].contains("too long"));
        assert!(reasons[3].contains("UTF-8"));
        assert!(reasons[4].contains("carriage return"));
    }

    #[test]
    fn csv_format() {
        let p = parse(
            b"password,user,realm\r\n\"p,w\"\"1\",alice,example.com\r\nx,bob,\n\"multi\nline\",carol,r\nonly,two\n",
            InputFormat::Csv,
        );
        assert_eq!(
            ok(&p),
            [
                s("alice", Some("example.com"), "p,w\"1"),
                s("bob", None, "x"),
                s("carol", Some("r"), "multi\nline")
            ]
        );
        assert_eq!(
            p.rejected,
            [Rejected {
                line: 6,
                reason: "2 fields, the header has 3".into()
            }]
        );
        let bad = parse(b"user,pass\n", InputFormat::Csv);
        assert!(bad.rejected[0].reason.contains("unknown CSV column 2"));
        let headerless = parse(b"alice,s3cret-pw\n", InputFormat::Csv);
        assert!(!headerless.rejected[0].reason.contains("s3cret"));
        let bad = parse(b"user,realm,password\n\"open,r,p\n", InputFormat::Csv);
        assert!(bad.rejected[0].reason.contains("unterminated"));
    }

    #[test]
    fn json_format() {
        let input = br#"[
  {"user": "alice", "realm": "example.com", "password": "s3cret"},
  {"user": "bob@example.org", "password": "x"},
  {"user": "carol", "realm": "r", "properties": {"authPassword": "SCRAM-SHA-1$4096:..."}},
  {"user": "dave", "realm": "r", "properties": {"userPassword": "fromprops", "x": {"base64": "AAE="}}},
  {"user": "eve"},
  {"user": "frank", "password": 5},
  {"user": "gina", "password": "p", "extra": 1},
  "not an object"
]"#;
        let p = parse(input, InputFormat::Json);
        assert_eq!(p.entries.len(), 4);
        assert_eq!(p.entries[2].properties.len(), 1);
        assert_eq!(
            p.entries[3].password.as_deref().map(|v| &v[..]),
            Some(&b"fromprops"[..])
        );
        assert_eq!(
            p.entries[3].properties,
            [(b"x".to_vec(), Zeroizing::new(vec![0, 1]))]
        );
        let lines: Vec<usize> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [6, 7, 8, 9]);
        assert!(
            parse(b"{}", InputFormat::Json).rejected[0]
                .reason
                .contains("array")
        );
        assert!(
            parse(
                b"[{\"user\":\"a\",\"password\":\"b\"}] x",
                InputFormat::Json
            )
            .rejected[0]
                .reason
                .contains("after")
        );
        assert!(parse(b"[]", InputFormat::Json).entries.is_empty());
    }
}

//! Bulk import: parsing user lists and applying them in one transaction, in memory
//! bounded independently of the number of users.
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
//! Parsing never stops at a bad entry: every problem is reported with its line number
//! ([`Rejected`]), and callers decide (by default nothing is written when anything was
//! rejected). Input is read in chunks: a line or CSV record longer than [`MAX_LINE`]
//! bytes, or a JSON element longer than [`MAX_ELEMENT`], is rejected without being
//! held. A problem that leaves the rest unreadable (a CSV header that names unknown
//! columns, JSON that is not an array) is the only rejection reported.
//!
//! # How an import runs
//! 1. [`read_input`] parses the input and sorts the entries by user (`user NUL realm
//!    NUL`, then line) through an [`ExternalSort`]: only its memory budget is held;
//!    the rest goes to unnamed temporary files in the database's directory.
//! 2. [`apply_input`] reads the sorted entries and the database's records in key
//!    order side by side (a merge: a Berkeley DB or GDBM file is sorted the same way
//!    first), so each user's existing secrets are at hand without one lookup per user;
//!    a second entry for a user is rejected (the first line wins). Each user's new
//!    records go into the transaction's stage (see `storage::stage`), which the commit
//!    writes.
//!
//!    An import of plain passwords into a PostgreSQL table holding nothing but
//!    passwords skips the merge: each user's password is staged as it is, and the
//!    server compares it with the stored one in the commit's statements (reading the
//!    table here costs more than the server's comparison). The summary then counts
//!    those users as [`Summary::pending`] until [`Summary::settle`] reads the commit's
//!    report.
//!
//! [`parse`] and [`apply`] are the same steps for input held in memory.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::ops::Range;

use zeroize::Zeroizing;

use crate::account::{
    NameProblem, Outcome, PasswordProblem, SecretPolicy, UserProps, change_password, check_names,
    check_password,
};
use crate::database::{CommitReport, Compared, Transaction};
use crate::error::{Error, Result};
use crate::record::{AUTH_PASSWORD, KeyRef, OTP_SECRET, USER_PASSWORD};
use crate::record::{MAX_NAME_LEN, MAX_SECRET_LEN, Secret, SecretBuf};
use crate::storage::sort::{ExternalSort, Sorted, SortedStream, SpillTo, group_hash};
use crate::storage::{Compare, Stage};

/// The longest line (lines format) or CSV record accepted, in bytes. The longest valid
/// entry is about 1.5 KiB (255-byte names, a 1023-byte password).
pub const MAX_LINE: usize = 64 << 10;
/// The longest JSON element (one user's object) accepted, in bytes.
pub const MAX_ELEMENT: usize = 1 << 20;
/// Bytes read from the input at a time.
const CHUNK: usize = 64 << 10;
/// A line, record or element this long stops the read: the input is not an import
/// file, and may never end (`</dev/zero`). Shorter ones that are too long to hold
/// are rejected one by one, with their reasons.
pub const MAX_RUN: usize = 4 << 20;
/// Memory for rejections before they spill.
const REJECT_BUDGET: usize = 1 << 20;
/// Imports of more entries than this hand the records that stay to the stage.
const COMPLETE_FROM: u64 = 4096;

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

/// The order an import's entries are sorted in, which must be the order the database
/// is read in: key order for a database that keeps its keys sorted (LMDB, SQLite,
/// PostgreSQL), else an order of users by a hash of `user NUL realm NUL` (then the
/// name), in which both sides sort fastest (a hash decides almost every comparison,
/// where names share long prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Bytewise key order.
    Key,
    /// By the hash of the user's key prefix.
    Hashed,
}

impl Order {
    /// The order for the database at `location`, from its format as detected now (a
    /// missing or Berkeley DB/GDBM file: [`Order::Hashed`]). Should the database turn
    /// out otherwise when the import runs, the entries are sorted again.
    pub fn for_location(location: &crate::location::Location) -> Order {
        use crate::location::Detected;
        if location.postgres().is_some() {
            return Order::Key;
        }
        // Only a regular file is opened (a FIFO would block the open).
        if !std::fs::metadata(location.path()).is_ok_and(|m| m.is_file()) {
            return Order::Hashed;
        }
        match crate::location::detect(location.path()) {
            Ok(Detected::Format(f)) if crate::storage::scans_in_key_order(f) => Order::Key,
            _ => Order::Hashed,
        }
    }

    /// Bytes of sort key before the record's own key.
    fn offset(self) -> usize {
        match self {
            Order::Key => 0,
            Order::Hashed => 8,
        }
    }
}

/// The hash of [`Order::Hashed`].
fn user_hash(b: &[u8]) -> [u8; 8] {
    group_hash(&[b])
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

/// An entry as the parser hands it over, borrowing the input's buffers.
pub struct EntryRef<'a> {
    /// 1-based line where the entry starts.
    pub line: usize,
    /// The user name.
    pub user: &'a [u8],
    /// The realm, when the input gives one.
    pub realm: Option<&'a [u8]>,
    /// The plaintext password, when given.
    pub password: Option<&'a [u8]>,
    /// Stored properties to write verbatim (JSON only).
    pub properties: &'a [(Vec<u8>, Secret)],
}

impl EntryRef<'_> {
    fn to_owned(&self) -> Entry {
        Entry {
            line: self.line,
            user: self.user.to_vec(),
            realm: self.realm.map(<[u8]>::to_vec),
            password: self.password.map(|p| Zeroizing::new(p.to_vec())),
            properties: self.properties.to_vec(),
        }
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

/// Parses `input` in `format`, in memory. Every entry is checked: user and realm names
/// (not empty, at most 255 bytes, no control characters, UTF-8), the password (not
/// empty, no NUL, no trailing CR, at most 1023 bytes).
pub fn parse(input: &[u8], format: InputFormat) -> Parsed {
    let mut out = Parsed::default();
    let mut entries = Vec::new();
    let mut rejected = Vec::new();
    let mut reader = input;
    let fatal = parse_stream(
        &mut reader,
        format,
        &mut |e| {
            entries.push(e.to_owned());
            Ok(())
        },
        &mut |r| {
            rejected.push(r);
            Ok(())
        },
    )
    .expect("reading from memory cannot fail");
    match fatal {
        Some(r) => out.rejected.push(r),
        None => {
            out.entries = entries;
            out.rejected = rejected;
        }
    }
    out
}

/// Reads `input` in `format` a chunk at a time, handing every accepted entry to
/// `entry` and every refused one to `reject`, in input order. Returns `Some` for a
/// problem that makes the rest of the input unreadable: callers then discard what they
/// were handed and report only that one. Errors are the input's read errors and the
/// callbacks' own.
pub fn parse_stream(
    input: &mut dyn Read,
    format: InputFormat,
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<Option<Rejected>> {
    let mut chunks = Chunks::new(input);
    match format {
        InputFormat::Lines => parse_lines(&mut chunks, entry, reject).map(|()| None),
        InputFormat::Csv => parse_csv(&mut chunks, entry, reject),
        InputFormat::Json => parse_json(&mut chunks, entry, reject),
    }
}

/// The input, read a chunk at a time into a buffer that is wiped when dropped.
struct Chunks<'r> {
    r: &'r mut dyn Read,
    buf: Zeroizing<Vec<u8>>,
    pos: usize,
    eof: bool,
}

impl<'r> Chunks<'r> {
    fn new(r: &'r mut dyn Read) -> Chunks<'r> {
        Chunks {
            r,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK)),
            pos: 0,
            eof: false,
        }
    }

    /// The unread bytes of the current chunk, reading the next one when it is used up;
    /// empty at the end of the input.
    fn avail(&mut self) -> Result<&[u8]> {
        if self.pos == self.buf.len() && !self.eof {
            self.buf.iter_mut().for_each(|b| *b = 0);
            self.buf.resize(CHUNK, 0);
            let n = loop {
                match self.r.read(&mut self.buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::io("<input>", e)),
                }
            };
            self.buf.truncate(n);
            self.pos = 0;
            self.eof = n == 0;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// A buffer for one line, record or element, of a fixed capacity (it never moves, so
/// no copy of a password is left in freed memory); past its capacity the rest is
/// dropped and the item marked too long.
struct Item {
    buf: Zeroizing<Vec<u8>>,
    max: usize,
    too_long: bool,
    shape: Shape,
}

/// A line's length and where its first `:` (and before it its first `@`) are: enough
/// to say which field makes a line too long to hold, without holding it.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    len: usize,
    colon: Option<usize>,
    at: Option<usize>,
    cr: bool,
}

impl Shape {
    fn of(b: &[u8]) -> Shape {
        let mut s = Shape::default();
        s.feed(b);
        s
    }

    fn feed(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if self.colon.is_none() {
            let upto = match memchr::memchr(b':', b) {
                Some(i) => {
                    self.colon = Some(self.len + i);
                    i
                }
                None => b.len(),
            };
            if self.at.is_none()
                && let Some(i) = memchr::memchr(b'@', &b[..upto])
            {
                self.at = Some(self.len + i);
            }
        }
        self.cr = b.last() == Some(&b'\r');
        self.len += b.len();
    }

    /// Why a line of this shape is rejected as too long: the field that is.
    fn reason(&self) -> String {
        if let Some(c) = self.colon {
            let user = self.at.unwrap_or(c);
            if user > MAX_NAME_LEN {
                let what = "user name";
                return NameProblem::TooLong { what, len: user }.to_string();
            }
            if let Some(a) = self.at
                && c - a - 1 > MAX_NAME_LEN
            {
                let len = c - a - 1;
                return NameProblem::TooLong { what: "realm", len }.to_string();
            }
            let pw = self.len - usize::from(self.cr) - c - 1;
            if pw > MAX_SECRET_LEN {
                return PasswordProblem::TooLong(pw).to_string();
            }
        }
        format!("the line is longer than {MAX_LINE} bytes")
    }
}

impl Item {
    fn new(max: usize) -> Item {
        Item {
            buf: Zeroizing::new(Vec::new()),
            max,
            too_long: false,
            shape: Shape::default(),
        }
    }

    fn extend(&mut self, b: &[u8]) -> Result<()> {
        self.shape.feed(b);
        if self.too_long {
            if self.shape.len > MAX_RUN {
                return Err(runaway(format_args!(
                    "an entry longer than {} MiB",
                    MAX_RUN >> 20
                )));
            }
            return Ok(());
        }
        if self.buf.len() + b.len() > self.max {
            self.too_long = true;
            self.buf.iter_mut().for_each(|x| *x = 0);
            self.buf.clear();
            return Ok(());
        }
        if self.buf.capacity() == 0 {
            *self.buf = Vec::with_capacity(self.max);
        }
        self.buf.extend_from_slice(b);
        Ok(())
    }

    fn push(&mut self, b: u8) -> Result<()> {
        self.extend(&[b])
    }

    fn clear(&mut self) {
        self.buf.iter_mut().for_each(|x| *x = 0);
        self.buf.clear();
        self.too_long = false;
        self.shape = Shape::default();
    }
}

/// Checks an entry's fields; returns the user and realm (a user `name@realm` without
/// an explicit realm is split at its first `@`, like saslpasswd2).
fn check_entry<'a>(
    user: &'a [u8],
    realm: Option<&'a [u8]>,
    password: Option<&[u8]>,
) -> std::result::Result<(&'a [u8], Option<&'a [u8]>), String> {
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
    Ok((user, realm))
}

/// Checks and hands over one entry.
fn deliver(
    line: usize,
    user: &[u8],
    realm: Option<&[u8]>,
    password: Option<&[u8]>,
    properties: &[(Vec<u8>, Secret)],
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<()> {
    match check_entry(user, realm, password) {
        Ok((user, realm)) => entry(&EntryRef {
            line,
            user,
            realm,
            password,
            properties,
        }),
        Err(reason) => reject(Rejected { line, reason }),
    }
}

fn parse_lines(
    chunks: &mut Chunks<'_>,
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<()> {
    let mut item = Item::new(MAX_LINE);
    let mut first: Option<u8> = None;
    let mut line = 0usize;
    let mut one = |line: usize, raw: &[u8], long: Option<Shape>, first: Option<u8>| -> Result<()> {
        if first == Some(b'#') {
            return Ok(());
        }
        if let Some(shape) = long {
            return reject(Rejected {
                line,
                reason: shape.reason(),
            });
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.is_empty() {
            return Ok(());
        }
        let Some(colon) = memchr::memchr(b':', raw) else {
            return reject(Rejected {
                line,
                reason: "no `:` between user and password".into(),
            });
        };
        deliver(
            line,
            &raw[..colon],
            None,
            Some(&raw[colon + 1..]),
            &[],
            entry,
            reject,
        )
    };
    loop {
        let avail = chunks.avail()?;
        if avail.is_empty() {
            // The last line, without a line feed.
            if !item.buf.is_empty() || item.too_long {
                let long = item.too_long.then_some(item.shape);
                one(line + 1, &item.buf, long, first)?;
            }
            return Ok(());
        }
        match memchr::memchr(b'\n', avail) {
            Some(i) => {
                line += 1;
                if item.buf.is_empty() && !item.too_long {
                    // The whole line is in this chunk.
                    let raw = &avail[..i];
                    let long = (i > MAX_LINE).then(|| Shape::of(raw));
                    one(line, raw, long, raw.first().copied())?;
                } else {
                    item.extend(&avail[..i]).map_err(|_| runaway_line(line))?;
                    let long = item.too_long.then_some(item.shape);
                    one(line, &item.buf, long, first)?;
                    item.clear();
                }
                first = None;
                chunks.consume(i + 1);
            }
            None => {
                let n = avail.len();
                if first.is_none() && item.buf.is_empty() && !item.too_long {
                    first = avail.first().copied();
                }
                item.extend(avail).map_err(|_| runaway_line(line + 1))?;
                chunks.consume(n);
            }
        }
    }
}

/// The error that stops the read at an input run over [`MAX_RUN`] bytes (`what`).
fn runaway(what: std::fmt::Arguments<'_>) -> Error {
    Error::Invalid(format!(
        "input: {what}: not an import file (reading stopped)"
    ))
}

/// [`runaway`] at line `line`.
fn runaway_line(line: usize) -> Error {
    runaway(format_args!(
        "line {line} is longer than {} MiB",
        MAX_RUN >> 20
    ))
}

/// Where the CSV reader is within a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CsvState {
    /// At the start of a record.
    RecordStart,
    /// At the start of a field after a comma.
    FieldStart,
    /// In an unquoted field.
    Unquoted,
    /// In a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field.
    QuoteSeen,
    /// After a closing quote and a CR.
    AfterQuoteCr,
}

/// One CSV record: its fields (in one buffer) and the line it starts on.
struct CsvRecord {
    item: Item,
    ends: Vec<usize>,
    line: usize,
}

impl CsvRecord {
    fn fields(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&e| {
                let f = &self.item.buf[start..e];
                start = e;
                f
            })
            .collect()
    }

    fn end_field(&mut self) {
        self.ends.push(self.item.buf.len());
    }
}

/// What to do with the records of a CSV input: the header first, then the rows.
struct CsvRows<'c> {
    /// Column of user, password, realm; None until the header was read.
    cols: Option<(usize, usize, Option<usize>, usize)>,
    entry: &'c mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &'c mut dyn FnMut(Rejected) -> Result<()>,
}

impl CsvRows<'_> {
    /// Handles one record; `Some` for a header that makes the input unreadable.
    fn record(&mut self, rec: &CsvRecord) -> Result<Option<Rejected>> {
        let Some((u, p, r, n)) = self.cols else {
            return Ok(self.header(rec).err());
        };
        if rec.item.too_long {
            (self.reject)(Rejected {
                line: rec.line,
                reason: format!("the record is longer than {MAX_LINE} bytes"),
            })?;
            return Ok(None);
        }
        let fields = rec.fields();
        if fields.len() != n {
            (self.reject)(Rejected {
                line: rec.line,
                reason: format!("{} fields, the header has {n}", fields.len()),
            })?;
            return Ok(None);
        }
        let realm = r.map(|r| fields[r]).filter(|r| !r.is_empty());
        deliver(
            rec.line,
            fields[u],
            realm,
            Some(fields[p]),
            &[],
            self.entry,
            self.reject,
        )?;
        Ok(None)
    }

    fn header(&mut self, rec: &CsvRecord) -> std::result::Result<(), Rejected> {
        let bad = |reason: String| Rejected {
            line: rec.line,
            reason,
        };
        if rec.item.too_long {
            return Err(bad(format!(
                "the header is longer than {MAX_LINE} bytes (is the header line missing?)"
            )));
        }
        let mut cols: HashMap<String, usize> = HashMap::new();
        let fields = rec.fields();
        for (i, f) in fields.iter().enumerate() {
            let name = String::from_utf8_lossy(f).trim().to_ascii_lowercase();
            let name = name.trim_start_matches('\u{feff}').to_string();
            if !["user", "realm", "password"].contains(&name.as_str()) {
                // The field is not echoed: without a header line it is a user's data,
                // perhaps a password.
                return Err(bad(format!(
                    "unknown CSV column {} in the header (expected user, realm, password; \
                     is the header line missing?)",
                    i + 1
                )));
            }
            if cols.insert(name.clone(), i).is_some() {
                return Err(bad(format!(
                    "column `{}` appears twice",
                    name.escape_debug()
                )));
            }
        }
        let (Some(&u), Some(&p)) = (cols.get("user"), cols.get("password")) else {
            return Err(bad(
                "the CSV header must name the columns user and password (and realm)".into(),
            ));
        };
        self.cols = Some((u, p, cols.get("realm").copied(), fields.len()));
        Ok(())
    }
}

/// An RFC 4180 reader: fields separated by `,`, records by LF or CRLF, fields in
/// double quotes may hold commas, newlines and `""` for a quote. A malformed quote
/// makes the rest unreadable.
fn parse_csv(
    chunks: &mut Chunks<'_>,
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<Option<Rejected>> {
    let mut rows = CsvRows {
        cols: None,
        entry,
        reject,
    };
    let mut rec = CsvRecord {
        item: Item::new(MAX_LINE),
        ends: Vec::new(),
        line: 1,
    };
    let mut state = CsvState::RecordStart;
    let mut line = 1usize;
    // Ends a record: a blank one (a single empty field) is skipped.
    let finish = |rec: &mut CsvRecord, rows: &mut CsvRows<'_>| -> Result<Option<Rejected>> {
        let blank = rec.ends.len() == 1 && rec.ends[0] == 0 && !rec.item.too_long;
        let out = if blank { None } else { rows.record(rec)? };
        rec.item.clear();
        rec.ends.clear();
        Ok(out)
    };
    loop {
        let avail = chunks.avail()?;
        if avail.is_empty() {
            // The end of the input.
            match state {
                CsvState::RecordStart => {}
                CsvState::Quoted => {
                    return Ok(Some(Rejected {
                        line: rec.line,
                        reason: "unterminated quoted field".into(),
                    }));
                }
                CsvState::Unquoted => {
                    if rec.item.buf.last() == Some(&b'\r') {
                        rec.item.buf.pop();
                    }
                    rec.end_field();
                    if let Some(f) = finish(&mut rec, &mut rows)? {
                        return Ok(Some(f));
                    }
                }
                CsvState::FieldStart | CsvState::QuoteSeen | CsvState::AfterQuoteCr => {
                    rec.end_field();
                    if let Some(f) = finish(&mut rec, &mut rows)? {
                        return Ok(Some(f));
                    }
                }
            }
            if rows.cols.is_none() {
                return Ok(Some(Rejected {
                    line: 1,
                    reason: "empty input: no CSV header".into(),
                }));
            }
            return Ok(None);
        }
        let n = avail.len();
        let mut i = 0;
        while i < n {
            let c = avail[i];
            i += 1;
            match state {
                CsvState::RecordStart | CsvState::FieldStart => {
                    if state == CsvState::RecordStart {
                        rec.line = line;
                    }
                    match c {
                        b'"' => state = CsvState::Quoted,
                        b',' => {
                            rec.end_field();
                            state = CsvState::FieldStart;
                        }
                        b'\n' => {
                            rec.end_field();
                            line += 1;
                            state = CsvState::RecordStart;
                            if let Some(f) = finish(&mut rec, &mut rows)? {
                                return Ok(Some(f));
                            }
                        }
                        _ => {
                            rec.item.push(c)?;
                            state = CsvState::Unquoted;
                        }
                    }
                }
                CsvState::Unquoted => match c {
                    b',' => {
                        rec.end_field();
                        state = CsvState::FieldStart;
                    }
                    b'\n' => {
                        if rec.item.buf.last() == Some(&b'\r') {
                            rec.item.buf.pop();
                        }
                        rec.end_field();
                        line += 1;
                        state = CsvState::RecordStart;
                        if let Some(f) = finish(&mut rec, &mut rows)? {
                            return Ok(Some(f));
                        }
                    }
                    b'"' => {
                        return Ok(Some(Rejected {
                            line,
                            reason: "a quote inside an unquoted field".into(),
                        }));
                    }
                    _ => rec.item.push(c)?,
                },
                CsvState::Quoted => match c {
                    b'"' => state = CsvState::QuoteSeen,
                    _ => {
                        if c == b'\n' {
                            line += 1;
                        }
                        rec.item.push(c)?;
                    }
                },
                CsvState::QuoteSeen => match c {
                    b'"' => {
                        rec.item.push(b'"')?;
                        state = CsvState::Quoted;
                    }
                    b',' => {
                        rec.end_field();
                        state = CsvState::FieldStart;
                    }
                    b'\n' => {
                        rec.end_field();
                        line += 1;
                        state = CsvState::RecordStart;
                        if let Some(f) = finish(&mut rec, &mut rows)? {
                            return Ok(Some(f));
                        }
                    }
                    b'\r' => state = CsvState::AfterQuoteCr,
                    _ => {
                        return Ok(Some(Rejected {
                            line,
                            reason: "text after a closing quote".into(),
                        }));
                    }
                },
                CsvState::AfterQuoteCr => match c {
                    b'\n' => {
                        rec.end_field();
                        line += 1;
                        state = CsvState::RecordStart;
                        if let Some(f) = finish(&mut rec, &mut rows)? {
                            return Ok(Some(f));
                        }
                    }
                    _ => {
                        return Ok(Some(Rejected {
                            line,
                            reason: "text after a closing quote".into(),
                        }));
                    }
                },
            }
        }
        chunks.consume(n);
    }
}

/// Where the JSON reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonState {
    /// Before the `[` (a byte-order mark and white space may come first).
    Start,
    /// After `[` or `,`, before an element.
    BeforeElement,
    /// In an element.
    Element,
    /// After the closing `]`: only white space may follow.
    After,
    /// After an empty array's `]`: anything may follow (as before).
    Done,
}

fn json_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// A JSON array read one element at a time: each top-level element (an object, up to
/// [`MAX_ELEMENT`] bytes) is parsed on its own, so a bad element is one rejection.
fn parse_json(
    chunks: &mut Chunks<'_>,
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<Option<Rejected>> {
    let fatal = |reason: &str| {
        Ok(Some(Rejected {
            line: 1,
            reason: reason.into(),
        }))
    };
    let mut state = JsonState::Start;
    let mut elem = Item::new(MAX_ELEMENT);
    let (mut elem_line, mut line) = (1usize, 1usize);
    let (mut depth, mut in_str, mut esc) = (0i64, false, false);
    let mut elements = 0usize;
    let mut at_start = true;
    let mut bom = 0usize;
    // Whitespace outside elements, in a row: endless blanks stop the read too.
    let mut blanks = 0usize;
    let blank_run = || {
        Err(runaway(format_args!(
            "more than {} MiB of blanks",
            MAX_RUN >> 20
        )))
    };
    loop {
        let avail = chunks.avail()?;
        if avail.is_empty() {
            return match state {
                JsonState::After | JsonState::Done => Ok(None),
                JsonState::Start => fatal("the JSON input must be an array of objects"),
                _ => fatal("unexpected end of the JSON input"),
            };
        }
        let n = avail.len();
        let mut i = 0;
        // Bytes of the current element in this chunk start here.
        let mut seg = 0usize;
        while i < n {
            let c = avail[i];
            match state {
                JsonState::Start => {
                    // A UTF-8 byte-order mark at the very start.
                    const BOM: &[u8] = "\u{feff}".as_bytes();
                    if at_start {
                        if c == BOM[bom] {
                            bom += 1;
                            at_start = bom < BOM.len();
                            i += 1;
                            continue;
                        }
                        if bom > 0 {
                            return fatal("the JSON input must be an array of objects");
                        }
                        at_start = false;
                    }
                    if c == b'\n' {
                        line += 1;
                    }
                    if json_ws(c) {
                        blanks += 1;
                        if blanks > MAX_RUN {
                            return blank_run();
                        }
                        i += 1;
                        continue;
                    }
                    if c != b'[' {
                        return fatal("the JSON input must be an array of objects");
                    }
                    state = JsonState::BeforeElement;
                    i += 1;
                }
                JsonState::BeforeElement => {
                    if json_ws(c) {
                        if c == b'\n' {
                            line += 1;
                        }
                        blanks += 1;
                        if blanks > MAX_RUN {
                            return blank_run();
                        }
                        i += 1;
                        continue;
                    }
                    blanks = 0;
                    if c == b']' && elements == 0 {
                        state = JsonState::Done;
                        i += 1;
                        continue;
                    }
                    state = JsonState::Element;
                    elem_line = line;
                    (depth, in_str, esc) = (0, false, false);
                    seg = i;
                }
                JsonState::Element => {
                    let mut end = false;
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
                            b',' | b']' if depth == 0 => end = true,
                            _ => {}
                        }
                    }
                    if c == b'\n' {
                        line += 1;
                    }
                    if !end {
                        i += 1;
                        continue;
                    }
                    elem.extend(&avail[seg..i])?;
                    elements += 1;
                    json_element(elem_line, &elem, entry, reject)?;
                    elem.clear();
                    state = if c == b',' {
                        JsonState::BeforeElement
                    } else {
                        JsonState::After
                    };
                    i += 1;
                }
                JsonState::After | JsonState::Done => {
                    if !json_ws(c) {
                        return fatal("text after the JSON array");
                    }
                    blanks += 1;
                    if blanks > MAX_RUN {
                        return blank_run();
                    }
                    i += 1;
                }
            }
        }
        if state == JsonState::Element {
            elem.extend(&avail[seg..n])?;
        }
        chunks.consume(n);
    }
}

/// Parses and hands over one element.
fn json_element(
    line: usize,
    elem: &Item,
    entry: &mut dyn FnMut(&EntryRef<'_>) -> Result<()>,
    reject: &mut dyn FnMut(Rejected) -> Result<()>,
) -> Result<()> {
    if elem.too_long {
        return reject(Rejected {
            line,
            reason: format!("the element is longer than {MAX_ELEMENT} bytes"),
        });
    }
    let value: serde_json::Value = match serde_json::from_slice(&elem.buf) {
        Ok(v) => v,
        Err(e) => {
            return reject(Rejected {
                line,
                reason: format!("invalid JSON: {e}"),
            });
        }
    };
    match json_entry(line, value) {
        Ok(e) => entry(&EntryRef {
            line,
            user: &e.user,
            realm: e.realm.as_deref(),
            password: e.password.as_deref().map(|p| &p[..]),
            properties: &e.properties,
        }),
        Err(reason) => reject(Rejected { line, reason }),
    }
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
    let (u, r) = check_entry(
        user.as_bytes(),
        realm_ref,
        password_bytes.as_deref().map(|v| &v[..]),
    )?;
    Ok(Entry {
        line,
        user: u.to_vec(),
        realm: r.map(<[u8]>::to_vec),
        password: password_bytes,
        properties: props,
    })
}

// ---------------------------------------------------------------------------------
// Applying

/// Rejected entries, in bounded memory (the rest spills), read back in line order.
pub struct Rejections {
    sort: ExternalSort,
    seq: u64,
}

impl fmt::Debug for Rejections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejections")
            .field("len", &self.len())
            .finish()
    }
}

impl Rejections {
    /// None yet; spilling as `to` says.
    pub fn new(to: &SpillTo) -> Rejections {
        Rejections {
            sort: ExternalSort::new(&to.with_budget(REJECT_BUDGET)),
            seq: 0,
        }
    }

    /// Adds one.
    pub fn push(&mut self, r: Rejected) -> Result<()> {
        self.seq += 1;
        self.sort.push_parts(
            &[&(r.line as u64).to_be_bytes(), &self.seq.to_be_bytes()],
            &[r.reason.as_bytes()],
        )
    }

    /// How many there are.
    pub fn len(&self) -> u64 {
        self.sort.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sort.is_empty()
    }

    /// Every rejection, by line (in the order found on the same line).
    pub fn into_sorted(self) -> Result<impl Iterator<Item = Result<Rejected>>> {
        let mut sorted = self.sort.finish()?;
        let mut failed = false;
        Ok(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match sorted.next() {
                Ok(Some((k, v))) => Some(Ok(Rejected {
                    line: u64::from_be_bytes(k[..8].try_into().expect("8")) as usize,
                    reason: String::from_utf8_lossy(v).into_owned(),
                })),
                Ok(None) => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        }))
    }
}

/// An import's entries, parsed and sorted by user and line, in bounded memory (see
/// [`read_input`]).
pub struct Input {
    sort: ExternalSort,
    order: Order,
    to: SpillTo,
    rejected: Rejections,
    fatal: Option<Rejected>,
    /// Whether every entry is a password and nothing else.
    plain: bool,
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Input")
            .field("entries", &self.entries())
            .field("rejected", &self.rejected.len())
            .field("fatal", &self.fatal)
            .finish()
    }
}

impl Input {
    /// An empty input, sorting in `order` as `to` says.
    pub fn new(to: &SpillTo, order: Order) -> Input {
        Input {
            sort: ExternalSort::new(to),
            order,
            to: to.clone(),
            rejected: Rejections::new(to),
            fatal: None,
            plain: true,
        }
    }

    /// Entries accepted by the parser.
    pub fn entries(&self) -> u64 {
        self.sort.len()
    }

    /// Entries the parser refused.
    pub fn rejected(&self) -> &Rejections {
        &self.rejected
    }

    /// A problem that made the input unreadable: then it is the only one reported,
    /// and nothing is imported.
    pub fn fatal(&self) -> Option<&Rejected> {
        self.fatal.as_ref()
    }

    /// Takes the parser's rejections (leaving none).
    pub fn take_rejected(&mut self) -> Rejections {
        let to = SpillTo::memory_only();
        std::mem::replace(&mut self.rejected, Rejections::new(&to))
    }

    /// Adds an entry whose realm is resolved (`realm`).
    fn push(&mut self, e: &EntryRef<'_>, realm: &[u8]) -> Result<()> {
        let line = (e.line as u64).to_be_bytes();
        let hash = match self.order {
            Order::Key => [0u8; 8],
            Order::Hashed => group_hash(&[e.user, b"\0", realm, b"\0"]),
        };
        let head: &[u8] = &hash[..self.order.offset()];
        let key: [&[u8]; 6] = [head, e.user, b"\0", realm, b"\0", &line];
        let (flag, pw): (&[u8], &[u8]) = match e.password {
            Some(p) => (&[1], p),
            None => (&[0], &[]),
        };
        self.plain &= e.password.is_some() && e.properties.is_empty();
        let pw_len = (pw.len() as u32).to_le_bytes();
        let n_props = (e.properties.len() as u32).to_le_bytes();
        if e.properties.is_empty() {
            return self.sort.push_parts(&key, &[flag, &pw_len, pw, &n_props]);
        }
        let lens: Vec<[u8; 8]> = e
            .properties
            .iter()
            .map(|(n, v)| {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&(n.len() as u32).to_le_bytes());
                b[4..].copy_from_slice(&(v.len() as u32).to_le_bytes());
                b
            })
            .collect();
        let mut value: Vec<&[u8]> = vec![flag, &pw_len, pw, &n_props];
        for ((n, v), l) in e.properties.iter().zip(&lens) {
            value.extend([&l[..], n, v]);
        }
        self.sort.push_parts(&key, &value)
    }
}

/// Parses `input` in `format` and sorts the accepted entries by user in `order`,
/// spilling as `to` says. `default_realm` gives the realm of entries without one; it
/// is asked once, at the first such entry.
pub fn read_input(
    input: &mut dyn Read,
    format: InputFormat,
    default_realm: &mut dyn FnMut() -> Result<Vec<u8>>,
    order: Order,
    to: &SpillTo,
) -> Result<Input> {
    let mut out = Input::new(to, order);
    let mut realm: Option<Vec<u8>> = None;
    let mut rejected = Rejections::new(to);
    let fatal = {
        let out = &mut out;
        parse_stream(
            input,
            format,
            &mut |e| {
                let r = match e.realm {
                    Some(r) => r,
                    None => {
                        if realm.is_none() {
                            realm = Some(default_realm()?);
                        }
                        realm.as_deref().expect("just set")
                    }
                };
                out.push(e, r)
            },
            &mut |r| rejected.push(r),
        )?
    };
    out.rejected = rejected;
    if let Some(f) = fatal {
        // Nothing else counts: the entries read so far are dropped.
        out = Input::new(to, order);
        out.fatal = Some(f);
    }
    Ok(out)
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
    /// Users whose passwords the database compares itself on commit (a PostgreSQL
    /// import of plain passwords): [`Summary::settle`] counts them as added, updated,
    /// unchanged or kept from the commit's report.
    pub pending: usize,
}

impl Summary {
    /// Counts the [`Summary::pending`] users from what the commit found (`mode`: the
    /// import's). Left pending when the commit could not count them (its connection
    /// dropped as it went, and it was then found done).
    pub fn settle(&mut self, report: &CommitReport, mode: Mode) {
        if let Some(Compared::Counted {
            added,
            updated,
            same,
        }) = report.compared
            && self.pending > 0
        {
            let n = |c: u64| usize::try_from(c).unwrap_or(usize::MAX);
            self.added += n(added);
            self.updated += n(updated);
            match mode {
                Mode::CreateOnly => self.kept += n(same),
                _ => self.unchanged += n(same),
            }
            self.pending = 0;
        }
    }
}

/// The properties a password change manages; replace-all drops any other property of
/// an imported user, so the database holds exactly the input.
const MANAGED: [&str; 3] = [USER_PASSWORD, AUTH_PASSWORD, OTP_SECRET];

/// How to apply an import.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'p> {
    /// What happens to existing users.
    pub mode: Mode,
    /// Which secrets a password writes.
    pub policy: &'p SecretPolicy,
    /// Work everything out (the summary, the rejections) but stage nothing.
    pub dry_run: bool,
}

/// Applies parsed entries to `txn`. Entries without a realm get `default_realm`. A
/// second entry for the same user@realm is rejected (the first one wins). `progress`
/// is called with the number of entries done so far. The entries are sorted in the
/// transaction's spill directory first; see [`apply_input`] (and [`Summary::settle`]
/// after the commit).
pub fn apply(
    txn: &mut Transaction,
    entries: Vec<Entry>,
    mode: Mode,
    policy: &SecretPolicy,
    default_realm: &[u8],
    progress: &mut dyn FnMut(usize),
) -> Result<(Summary, Vec<Rejected>)> {
    let order = match txn.base_in_key_order() {
        Some(true) => Order::Key,
        _ => Order::Hashed,
    };
    let mut input = Input::new(&txn.spill_to(), order);
    for e in &entries {
        let r = EntryRef {
            line: e.line,
            user: &e.user,
            realm: e.realm.as_deref(),
            password: e.password.as_deref().map(|p| &p[..]),
            properties: &e.properties,
        };
        input.push(&r, e.realm.as_deref().unwrap_or(default_realm))?;
    }
    drop(entries);
    let opts = ApplyOptions {
        mode,
        policy,
        dry_run: false,
    };
    let (summary, rejected) = apply_input(txn, input, &opts, progress)?;
    let rejected = rejected.into_sorted()?.collect::<Result<Vec<_>>>()?;
    Ok((summary, rejected))
}

/// One property of a user during an import: its name and value in the database (as
/// places in the set's buffer) and, once changed, its new value.
struct Prop {
    name: Range<usize>,
    base: Option<Range<usize>>,
    now: Option<Secret>,
    changed: bool,
}

/// A user's properties during an import. One set serves each user in turn: names and
/// the database's values are held in one buffer, wiped between users, so a user
/// costs no allocation unless one of their values changes.
struct PropSet {
    buf: SecretBuf,
    props: Vec<Prop>,
}

impl PropSet {
    fn new() -> PropSet {
        PropSet {
            buf: SecretBuf::with_capacity(512),
            props: Vec::with_capacity(8),
        }
    }

    /// Forgets the last user's properties (wiping their values).
    fn clear(&mut self) {
        self.buf.clear();
        self.props.clear();
    }

    fn hold(&mut self, b: &[u8]) -> Range<usize> {
        let at = self.buf.len();
        self.buf.push(b);
        at..self.buf.len()
    }

    /// A property as the database holds it.
    fn push_base(&mut self, name: &[u8], value: &[u8]) {
        let name = self.hold(name);
        let base = Some(self.hold(value));
        self.props.push(Prop {
            name,
            base,
            now: None,
            changed: false,
        });
    }

    fn name(&self, p: &Prop) -> &[u8] {
        &self.buf.as_bytes()[p.name.clone()]
    }

    fn base(&self, p: &Prop) -> Option<&[u8]> {
        p.base.clone().map(|r| &self.buf.as_bytes()[r])
    }

    /// The property's value now: its new one once changed, else the database's.
    fn current<'a>(&'a self, p: &'a Prop) -> Option<&'a [u8]> {
        if p.changed {
            p.now.as_deref().map(|v| &v[..])
        } else {
            self.base(p)
        }
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        self.props.iter().position(|p| self.name(p) == name)
    }

    fn set(&mut self, name: &[u8], value: Option<Secret>) {
        match self.position(name) {
            Some(i) => {
                let p = &mut self.props[i];
                p.now = value;
                p.changed = true;
            }
            None => {
                let name = self.hold(name);
                self.props.push(Prop {
                    name,
                    base: None,
                    now: value,
                    changed: true,
                });
            }
        }
    }

    fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let p = &self.props[self.position(name)?];
        self.current(p)
    }
}

impl UserProps for PropSet {
    fn get(&self, prop: &str) -> Result<Option<Secret>> {
        Ok(PropSet::get(self, prop.as_bytes()).map(|v| Secret::new(v.to_vec())))
    }

    fn put(&mut self, prop: &str, value: Secret) -> Result<()> {
        self.set(prop.as_bytes(), Some(value));
        Ok(())
    }

    fn delete(&mut self, prop: &str) -> Result<()> {
        self.set(prop.as_bytes(), None);
        Ok(())
    }
}

/// The state of an import's merge of its sorted entries with the database.
struct Merge<'s> {
    opts: ApplyOptions<'s>,
    stage: Option<Stage>,
    summary: Summary,
    rejected: Rejections,
    key: Vec<u8>,
}

impl Merge<'_> {
    /// Hands the stage to `txn` for its commit; the summary and every rejection.
    fn finish(mut self, txn: &mut Transaction) -> Result<(Summary, Rejections)> {
        if let Some(stage) = self.stage.take() {
            txn.set_stage(stage)?;
        }
        self.summary.rejected = self.rejected.len() as usize;
        Ok((self.summary, self.rejected))
    }

    /// Rejects the entries that follow the current one for the same user (`group`:
    /// their sort key without the line; `prefix`: `user NUL realm NUL`), whose first
    /// entry was on `first_line`, and moves `entries` to the next user's first entry.
    /// Returns how many entries it moved past, the current one included.
    fn reject_repeats(
        &mut self,
        entries: &mut Sorted,
        group: &[u8],
        prefix: &[u8],
        first_line: usize,
    ) -> Result<usize> {
        let mut n = 1;
        while let Some((key, _)) = entries.next()?
            && key[..key.len() - 8] == group[..]
        {
            let at = memchr::memchr(0, prefix).unwrap_or(0);
            let (user, realm) = (&prefix[..at], &prefix[at + 1..prefix.len() - 1]);
            self.rejected.push(Rejected {
                line: line_of_key(key),
                reason: format!(
                    "{}@{} appears again (first on line {first_line})",
                    String::from_utf8_lossy(user),
                    String::from_utf8_lossy(realm)
                ),
            })?;
            n += 1;
        }
        Ok(n)
    }

    fn put(&mut self, prefix: &[u8], name: &[u8], value: &[u8]) -> Result<()> {
        if let Some(st) = &mut self.stage {
            self.key.clear();
            self.key.extend_from_slice(prefix);
            self.key.extend_from_slice(name);
            st.put(&self.key, value)?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<()> {
        if let Some(st) = &mut self.stage {
            st.delete(key)?;
        }
        Ok(())
    }

    /// A record of the database that stays.
    fn keep(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if let Some(st) = &mut self.stage {
            st.keep(key, value)?;
        }
        Ok(())
    }

    /// Whether the stage wants the records that stay.
    fn wants_kept(&self) -> bool {
        self.stage.as_ref().is_some_and(Stage::wants_kept)
    }

    /// A key that is not `user NUL realm NUL property`: kept, except by replace-all.
    fn malformed(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        if self.opts.mode == Mode::ReplaceAll {
            self.delete(key)
        } else {
            self.keep(key, value)
        }
    }

    /// The records of a user, each kept or deleted.
    fn keep_or_delete_all(&mut self, prefix: &[u8], props: &PropSet, keep: bool) -> Result<()> {
        if keep && !self.wants_kept() {
            return Ok(());
        }
        for p in &props.props {
            self.key.clear();
            self.key.extend_from_slice(prefix);
            self.key.extend_from_slice(props.name(p));
            if let Some(st) = &mut self.stage {
                match (props.base(p), keep) {
                    (Some(v), true) => st.keep(&self.key, v)?,
                    _ => st.delete(&self.key)?,
                }
            }
        }
        Ok(())
    }

    /// A user of the database that the input does not name.
    fn base_only(&mut self, prefix: &[u8], props: &PropSet) -> Result<()> {
        let replace = self.opts.mode == Mode::ReplaceAll;
        if replace {
            self.summary.removed += 1;
        }
        self.keep_or_delete_all(prefix, props, !replace)
    }

    /// A user of the input (`entry`, encoded as [`Input::push`] does), with the
    /// properties the database holds for them.
    fn user(&mut self, prefix: &[u8], entry: &[u8], props: &mut PropSet) -> Result<()> {
        let (password, entry_props) = decode_entry(entry)?;
        let policy = self.opts.policy;
        let plain_only = policy.plaintext && !policy.scram && !policy.otp;
        if let Some(pw) = password
            && plain_only
            && entry_props.is_empty()
        {
            // A plaintext password and at most a plaintext password stored: what a
            // password change does then, without its general machinery.
            match &props.props[..] {
                [] => {
                    self.summary.added += 1;
                    return self.put(prefix, USER_PASSWORD.as_bytes(), pw);
                }
                [p] if props.name(p) == USER_PASSWORD.as_bytes() => {
                    if self.opts.mode == Mode::CreateOnly {
                        self.summary.kept += 1;
                        return self.keep_or_delete_all(prefix, props, true);
                    }
                    let old = props.base(p).unwrap_or_default();
                    if bool::from(subtle::ConstantTimeEq::ct_eq(old, pw)) {
                        self.summary.unchanged += 1;
                        return self.keep_or_delete_all(prefix, props, true);
                    }
                    self.summary.updated += 1;
                    return self.put(prefix, USER_PASSWORD.as_bytes(), pw);
                }
                _ => {}
            }
        }
        if self.opts.mode == Mode::ReplaceAll {
            for i in 0..props.props.len() {
                if !MANAGED
                    .iter()
                    .any(|m| m.as_bytes() == props.name(&props.props[i]))
                {
                    let p = &mut props.props[i];
                    p.now = None;
                    p.changed = true;
                }
            }
        }
        let names: Vec<Vec<u8>> = props
            .props
            .iter()
            .filter(|p| props.current(p).is_some())
            .map(|p| props.name(p).to_vec())
            .collect();
        let exists = !names.is_empty();
        if exists && self.opts.mode == Mode::CreateOnly {
            self.summary.kept += 1;
            return self.keep_or_delete_all(prefix, props, true);
        }
        let mut outcome = match password {
            Some(pw) => change_password(props, pw, policy, &names)?,
            None if exists => Outcome::Unchanged,
            None => Outcome::Added,
        };
        for (name, value) in &entry_props {
            if props.get(name) != Some(*value) {
                props.set(name, Some(Secret::new(value.to_vec())));
                if outcome == Outcome::Unchanged {
                    outcome = Outcome::Updated;
                }
            }
        }
        match outcome {
            Outcome::Added => self.summary.added += 1,
            Outcome::Updated => self.summary.updated += 1,
            Outcome::Unchanged => self.summary.unchanged += 1,
        }
        for p in &props.props {
            let same = !p.changed
                || match (props.base(p), &p.now) {
                    (Some(a), Some(b)) => a == &b[..],
                    (None, None) => true,
                    _ => false,
                };
            self.key.clear();
            self.key.extend_from_slice(prefix);
            self.key.extend_from_slice(props.name(p));
            if let Some(st) = &mut self.stage {
                match props.current(p) {
                    Some(v) if same => st.keep(&self.key, v)?,
                    Some(v) => st.put(&self.key, v)?,
                    None if p.base.is_some() => st.delete(&self.key)?,
                    None => {}
                }
            }
        }
        Ok(())
    }
}

/// The password and properties of an entry encoded by [`Input::push`].
#[allow(clippy::type_complexity)]
fn decode_entry(v: &[u8]) -> Result<(Option<&[u8]>, Vec<(&[u8], &[u8])>)> {
    let bad = || Error::Invalid("internal: a sorted import entry is damaged".into());
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = v.get(at..at + n).ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4")) as usize;
    let has_pw = take(1)?[0] == 1;
    let pw_len = u32_of(take(4)?);
    let pw = take(pw_len)?;
    let n = u32_of(take(4)?);
    let mut props = Vec::with_capacity(n);
    for _ in 0..n {
        let lens = take(8)?;
        let (nl, vl) = (u32_of(&lens[..4]), u32_of(&lens[4..]));
        let name = take(nl)?;
        let value = take(vl)?;
        props.push((name, value));
    }
    Ok((has_pw.then_some(pw), props))
}

/// Applies sorted entries to `txn`: a merge of the entries with the database's
/// records in key order (see the module docs), staging each user's changes in the
/// transaction for its commit (unless `dry_run`). Returns what was (or would be) done
/// and every rejection, the parser's included; users whose passwords the database
/// compares itself on commit are [`Summary::pending`] until [`Summary::settle`].
pub fn apply_input(
    txn: &mut Transaction,
    mut input: Input,
    opts: &ApplyOptions<'_>,
    progress: &mut dyn FnMut(usize),
) -> Result<(Summary, Rejections)> {
    let policy = opts.policy;
    let compare = match opts.mode {
        _ if opts.dry_run || !input.plain => None,
        _ if !(policy.plaintext && !policy.scram && !policy.otp) => None,
        Mode::Upsert => Some(Compare::Upsert),
        Mode::CreateOnly => Some(Compare::CreateOnly),
        Mode::ReplaceAll => None,
    };
    let mut m = Merge {
        opts: *opts,
        stage: if opts.dry_run {
            None
        } else {
            // A large import rebuilds a whole file anyway: it hands over the records
            // that stay, so the commit does not read and merge the old file again.
            let mut stage = txn.new_stage(false, input.entries() > COMPLETE_FROM)?;
            // Most entries make one change.
            stage.reserve(input.entries());
            Some(stage)
        },
        summary: Summary::default(),
        rejected: input.take_rejected(),
        key: Vec::with_capacity(512),
    };
    let mut entries: Sorted = input.sort.finish()?;
    let compare = match compare {
        Some(how)
            if txn.compares_passwords()?
                && worth_comparing(txn, &mut entries, input.order.offset())? =>
        {
            Some(how)
        }
        _ => None,
    };
    if let Some(how) = compare {
        m.stage.as_mut().expect("not a dry run").compare(how)?;
        stage_compared(&mut m, entries, input.order.offset(), progress)?;
        return m.finish(txn);
    }
    // Both sides in one order: the database's key order when it keeps one, else the
    // hashed order (the entries are sorted again in the rare case they were sorted
    // for another kind of database than the one found).
    let order = match txn.base_in_key_order() {
        Some(true) => Order::Key,
        Some(false) => Order::Hashed,
        None => input.order,
    };
    if order != input.order {
        entries = resort(entries, input.order, order, &input.to)?;
    }
    let off = order.offset();
    {
        let mut base: SortedStream<'_> = match order {
            Order::Key => txn.base_sorted(true)?,
            Order::Hashed => {
                let mut sort = ExternalSort::new(&txn.spill_to());
                txn.base_each(&mut |key, value| {
                    let hash = match KeyRef::parse(key) {
                        Ok(_) => user_hash(&key[..prefix_len(key)]),
                        Err(_) => user_hash(key),
                    };
                    sort.push_parts(&[&hash, key], &[value])
                })?;
                SortedStream::Sorted(sort.finish()?)
            }
        };
        // Both streams lend their current record until they move on.
        base.next()?;
        entries.next()?;
        let mut done = 0usize;
        let mut next_report = 0usize;
        let mut props = PropSet::new();
        let mut group: Vec<u8> = Vec::with_capacity(512);
        loop {
            let b = base.current();
            // A malformed key of the database stands alone.
            if let Some((k, v)) = b
                && KeyRef::parse(&k[off..]).is_err()
            {
                m.malformed(&k[off..], v)?;
                base.next()?;
                continue;
            }
            let e = entries.current();
            if b.is_none() && e.is_none() {
                break;
            }
            // The users' sort keys: [hash] user NUL realm NUL.
            let b_group = b.map(|(k, _)| &k[..off + prefix_len(&k[off..])]);
            let e_group = e.map(|(k, _)| &k[..k.len() - 8]);
            let cmp = match (b_group, e_group) {
                (Some(bg), Some(eg)) => bg.cmp(eg),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            // The database's records of the next user (when it is the database's).
            props.clear();
            group.clear();
            if cmp != std::cmp::Ordering::Greater {
                group.extend_from_slice(b_group.expect("a base record"));
                let bg = group.len();
                while let Some((k, v)) = base.current()
                    && k.starts_with(&group)
                {
                    if KeyRef::parse(&k[off..]).is_ok() {
                        props.push_base(&k[bg..], v);
                    } else {
                        m.malformed(&k[off..], v)?;
                    }
                    base.next()?;
                }
            } else {
                group.extend_from_slice(e_group.expect("an entry"));
            }
            let prefix = &group[off..];
            if cmp == std::cmp::Ordering::Less {
                m.base_only(prefix, &props)?;
                continue;
            }
            // The input's entries for this user: the first wins.
            let (key, entry) = entries.current().expect("an entry");
            let first_line = line_of_key(key);
            m.user(prefix, entry, &mut props)?;
            done += m.reject_repeats(&mut entries, &group, prefix, first_line)?;
            if done >= next_report {
                progress(done);
                next_report = done + 1024;
            }
        }
        progress(done);
    }
    m.finish(txn)
}

/// Imports of this many entries or more ask the database first whether nearly every
/// password would be written ([`worth_comparing`]); smaller ones always leave the
/// comparison to it (their rows cost the server a few index probes, where reading the
/// table costs a scan of all of it).
const SAMPLE_FROM: usize = 1000;
/// The most entries in that sample.
const SAMPLE: usize = 512;

/// Whether the database should compare the (plain) passwords of `entries` itself: for
/// a large import, when at least nine in ten of an evenly spaced sample would be
/// written (new users, or other passwords). Otherwise reading the table and writing
/// only what changed costs less: measured on 200,000 users against a table of as
/// many (private server, four interleaved runs each), the server's comparison took
/// 534-605 ms where every password changed (635-683 ms through the read) but about
/// 390 ms where none did (143-156 ms through the read, which then writes nothing).
/// `off`: where a sort key's user starts. Leaves `entries` rewound.
fn worth_comparing(txn: &Transaction, entries: &mut Sorted, off: usize) -> Result<bool> {
    let n = usize::try_from(entries.len()).unwrap_or(usize::MAX);
    if n < SAMPLE_FROM {
        return Ok(true);
    }
    let step = n.div_ceil(SAMPLE);
    let mut sample: Vec<(Vec<u8>, Secret)> = Vec::with_capacity(SAMPLE);
    let mut i = 0usize;
    while let Some((k, v)) = entries.next()? {
        if i.is_multiple_of(step)
            && let (Some(password), _) = decode_entry(v)?
        {
            let mut key = k[off..k.len() - 8].to_vec();
            key.extend_from_slice(USER_PASSWORD.as_bytes());
            sample.push((key, Secret::new(password.to_vec())));
        }
        i += 1;
    }
    entries.rewind()?;
    let puts: Vec<(&[u8], &[u8])> = sample.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    let writes = txn.puts_that_write(&puts)?;
    Ok(writes * 10 >= puts.len() * 9)
}

/// The rest of [`apply_input`] for passwords the database compares itself: each user's
/// first entry is staged as their `userPassword`, without reading the database.
fn stage_compared(
    m: &mut Merge<'_>,
    mut entries: Sorted,
    off: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<()> {
    let (mut done, mut next_report) = (0usize, 0usize);
    let mut group = Vec::with_capacity(512);
    entries.next()?;
    while let Some((k, entry)) = entries.current() {
        group.clear();
        group.extend_from_slice(&k[..k.len() - 8]);
        let (Some(password), props) = decode_entry(entry)? else {
            return Err(Error::Invalid(
                "internal: an entry of a plain import holds no password".into(),
            ));
        };
        if !props.is_empty() {
            return Err(Error::Invalid(
                "internal: an entry of a plain import holds more than a password".into(),
            ));
        }
        let first_line = line_of_key(k);
        m.put(&group[off..], USER_PASSWORD.as_bytes(), password)?;
        m.summary.pending += 1;
        done += m.reject_repeats(&mut entries, &group, &group[off..], first_line)?;
        if done >= next_report {
            progress(done);
            next_report = done + 1024;
        }
    }
    progress(done);
    Ok(())
}

/// Sorts sorted entries again, from one order into another.
fn resort(mut entries: Sorted, from: Order, to_order: Order, to: &SpillTo) -> Result<Sorted> {
    let mut sort = ExternalSort::new(to);
    while let Some((k, v)) = entries.next()? {
        let key = &k[from.offset()..];
        let hash = match to_order {
            Order::Key => [0u8; 8],
            Order::Hashed => user_hash(&key[..key.len() - 8]),
        };
        sort.push_parts(&[&hash[..to_order.offset()], key], &[v])?;
    }
    sort.finish()
}

/// The length of `user NUL realm NUL` at the start of a well-formed key.
fn prefix_len(key: &[u8]) -> usize {
    let mut nuls = memchr::memchr_iter(0, key);
    let _ = nuls.next();
    nuls.next().map_or(key.len(), |i| i + 1)
}

/// The line an input sort key ends with.
fn line_of_key(key: &[u8]) -> usize {
    u64::from_be_bytes(key[key.len() - 8..].try_into().expect("8")) as usize
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

    /// Endless input that never ends an entry (`</dev/zero`, endless blanks around
    /// JSON elements) stops the read with an error, in every format.
    #[test]
    fn endless_input_stops() {
        use std::io::Read;
        let cases: [(InputFormat, Box<dyn Read>, &str); 5] = [
            (
                InputFormat::Lines,
                Box::new(std::io::repeat(0)),
                "line 1 is longer than 4 MiB",
            ),
            (
                InputFormat::Lines,
                Box::new(b"a:b\n".chain(std::io::repeat(b'x'))),
                "line 2 is longer than 4 MiB",
            ),
            (
                InputFormat::Csv,
                Box::new(b"user,password\n\"".chain(std::io::repeat(b'a'))),
                "longer than 4 MiB",
            ),
            (
                InputFormat::Json,
                Box::new(b"[{\"user\":".chain(std::io::repeat(b' '))),
                "longer than 4 MiB",
            ),
            (
                InputFormat::Json,
                Box::new(b"[{\"user\":\"a\"},".chain(std::io::repeat(b'\n'))),
                "4 MiB of blanks",
            ),
        ];
        for (format, mut r, want) in cases {
            let e = parse_stream(&mut r, format, &mut |_| Ok(()), &mut |_| Ok(()))
                .expect_err("endless input must fail");
            assert!(e.to_string().contains(want), "{format:?}: {e}");
        }
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

//! Reading a password from the terminal or from a pipe, as `saslpasswd2` does.
//!
//! On a terminal the prompt goes to stdout, echo is switched off with `TCSAFLUSH`
//! (typeahead is discarded) and `ECHONL` on, one line is read, and the terminal is
//! restored; a line that did not end in a newline gets one printed. Unlike Cyrus, the
//! terminal is also restored when a signal interrupts the prompt, and a line longer
//! than the limit is read to its end (so no part of it is left for the shell to run),
//! up to [`MAX_READ`] bytes: an input without end (`</dev/zero`) is an error there, as
//! a too long password is (Cyrus reads at most 1024 bytes).
//!
//! In pipe mode one line is read (up to the first newline or end of input). Cyrus did
//! a single `read(2048)` and so cut passwords that arrived in several chunks. On a
//! terminal a read that returns a partial line (Ctrl-D after typing) ends the line,
//! as it did for Cyrus; only a line longer than the read buffer takes several reads.
//!
//! A standard input that was closed when the program started reads as `EBADF`, as
//! for Cyrus (`saslpasswd2: Bad file descriptor`, exit 1), although the Rust runtime
//! reopens a closed descriptor 0 on /dev/null before `main`: the binary records the
//! state first, through [`record_stdin_state`] in `.init_array`.
//!
//! Buffers that hold the password are wiped when dropped.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use zeroize::Zeroizing;

use crate::record::{MAX_SECRET_LEN, Secret};

/// Why a password read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The read itself failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The line was longer than the limit (its length, or a lower bound).
    #[error("the password is too long: {0} bytes (the maximum is {MAX_SECRET_LEN})")]
    TooLong(usize),
}

pub use crate::account::{PasswordProblem, check_password};

/// The most a password read consumes before it gives up with [`ReadError::TooLong`]
/// (a terminal line is at most 4096 bytes; a pipe may never end). Up to this, the
/// length of a too long line is reported exactly; nothing past [`MAX_SECRET_LEN`] is
/// kept in memory.
pub const MAX_READ: usize = 4 << 20;

/// Whether descriptor 0 was closed when the process started.
static STDIN_CLOSED_AT_START: AtomicBool = AtomicBool::new(false);

/// Records whether descriptor 0 is open. Meant to run before the Rust runtime starts
/// (a binary puts it in `.init_array`), which reopens a closed descriptor 0 on
/// /dev/null; without it a closed stdin reads as an empty password.
pub extern "C" fn record_stdin_state() {
    // SAFETY: F_GETFD only queries the descriptor flags.
    let closed = unsafe { libc::fcntl(0, libc::F_GETFD) } == -1;
    STDIN_CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    nix::unistd::isatty(io::stdin().as_fd()).unwrap_or(false)
}

/// Reads one password. With `pipe` (or when stdin is not a terminal) no prompt is
/// shown and echo is left alone. One trailing `\n` is removed.
pub fn read_password(prompt: &str, pipe: bool) -> Result<Secret, ReadError> {
    if pipe || !stdin_is_tty() {
        return read_line();
    }
    let stdin = io::stdin();
    let old = match termios::tcgetattr(stdin.as_fd()) {
        Ok(t) => t,
        Err(_) => return read_line(),
    };
    let mut out = io::stdout();
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    let mut quiet = old.clone();
    quiet.local_flags.remove(
        LocalFlags::ECHO
            | LocalFlags::ECHOE
            | LocalFlags::ECHOK
            | LocalFlags::ECHOCTL
            | LocalFlags::ECHOPRT
            | LocalFlags::ECHOKE,
    );
    quiet
        .local_flags
        .insert(LocalFlags::ICANON | LocalFlags::ECHONL);
    let guard = TermGuard::install(&old);
    termios::tcsetattr(stdin.as_fd(), SetArg::TCSAFLUSH, &quiet).map_err(io::Error::from)?;
    let read = read_raw_line(true);
    drop(guard);
    let (line, ended) = read?;
    if !ended {
        out.write_all(b"\n")?;
        out.flush()?;
    }
    Ok(line)
}

/// Reads from fd 0 up to the first newline or end of input, without buffering past
/// the line more than one chunk. Returns the line without its newline.
fn read_line() -> Result<Secret, ReadError> {
    read_raw_line(false).map(|(l, _)| l)
}

/// Reads one line from fd 0; returns it and whether it ended in a newline. On a
/// terminal (`tty`) a short read without a newline also ends the line: the user
/// pressed Ctrl-D after typing.
fn read_raw_line(tty: bool) -> Result<(Secret, bool), ReadError> {
    if STDIN_CLOSED_AT_START.load(Ordering::Relaxed) {
        return Err(ReadError::Io(io::Error::from_raw_os_error(libc::EBADF)));
    }
    // Fixed capacity: the buffer never reallocates, so no copy of the secret is left
    // behind in freed memory.
    let cap = MAX_SECRET_LEN + 2;
    let mut line = Zeroizing::new(Vec::with_capacity(cap));
    let mut chunk = Zeroizing::new([0u8; 512]);
    let mut total = 0usize;
    let stdin = io::stdin();
    loop {
        let n = match nix::unistd::read(stdin.as_fd(), &mut chunk[..]) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ReadError::Io(e.into())),
        };
        if n == 0 {
            break;
        }
        let data = &chunk[..n];
        let (part, ended) = match data.iter().position(|&b| b == b'\n') {
            Some(p) => (&data[..p], true),
            None => (data, false),
        };
        total += part.len();
        if line.len() + part.len() <= cap {
            line.extend_from_slice(part);
        }
        if ended {
            return finish(line, total, true);
        }
        if total > MAX_READ {
            // Too long whatever follows; stop reading an input that may not end.
            return Err(ReadError::TooLong(total));
        }
        if tty && n < chunk.len() {
            break;
        }
    }
    finish(line, total, false)
}

fn finish(line: Secret, total: usize, ended: bool) -> Result<(Secret, bool), ReadError> {
    if total > MAX_SECRET_LEN + 1 {
        return Err(ReadError::TooLong(total));
    }
    Ok((line, ended))
}

/// The terminal state to restore if a signal arrives while echo is off.
static SAVED: AtomicPtr<libc::termios> = AtomicPtr::new(std::ptr::null_mut());

/// Restores the terminal on drop, and on SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGTSTP while
/// it lives.
struct TermGuard {
    old: Termios,
    prev: Vec<(nix::sys::signal::Signal, nix::sys::signal::SigAction)>,
}

impl TermGuard {
    fn install(old: &Termios) -> TermGuard {
        use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
        let raw: libc::termios = old.clone().into();
        let boxed = Box::into_raw(Box::new(raw));
        let prev_ptr = SAVED.swap(boxed, Ordering::SeqCst);
        if !prev_ptr.is_null() {
            // SAFETY: the pointer came from Box::into_raw above in an earlier call.
            drop(unsafe { Box::from_raw(prev_ptr) });
        }
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        let mut prev = Vec::new();
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGTSTP,
        ] {
            // SAFETY: the handler only calls async-signal-safe functions.
            if let Ok(p) = unsafe { sigaction(sig, &action) } {
                prev.push((sig, p));
            }
        }
        TermGuard {
            old: old.clone(),
            prev,
        }
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.old);
        for (sig, act) in self.prev.drain(..) {
            // SAFETY: restoring the previous disposition.
            let _ = unsafe { nix::sys::signal::sigaction(sig, &act) };
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let p = SAVED.load(Ordering::SeqCst);
    // SAFETY: tcsetattr, signal and raise are async-signal-safe; p is either null or
    // a live leaked termios.
    unsafe {
        if !p.is_null() {
            libc::tcsetattr(0, libc::TCSANOW, p);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_checks_are_reexported() {
        assert_eq!(check_password(b""), Err(PasswordProblem::Empty));
        assert_eq!(check_password(b"a\0b"), Err(PasswordProblem::Nul));
        assert_eq!(check_password(b"pw\r"), Err(PasswordProblem::TrailingCr));
        assert_eq!(
            check_password(&[b'a'; 1024]),
            Err(PasswordProblem::TooLong(1024))
        );
        assert_eq!(check_password(&[b'a'; 1023]), Ok(()));
        assert_eq!(check_password("pässwörd:with:colons".as_bytes()), Ok(()));
    }
}

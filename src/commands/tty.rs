//! Hidden input from a terminal. Echo is off only while the user types; the terminal
//! is put back on every way out: the value entered, an error, Ctrl-C (the prompt's
//! future is dropped), a panic (unwinding drops the guard) and a forced exit after a
//! second Ctrl-C (which calls [`restore_terminal`] before exiting).

use std::io::{BufRead, Write};
use std::sync::Mutex;

/// The settings a hidden prompt changed, while it is open.
static SAVED: Mutex<Option<(i32, libc::termios)>> = Mutex::new(None);

/// Echo off on a terminal for as long as it lives.
pub struct EchoOff {
    _private: (),
}

impl EchoOff {
    /// Turn echo off on `fd`; None when it is not a terminal (nothing changed).
    pub fn new(fd: i32) -> Option<EchoOff> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut term: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
            return None;
        }
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((fd, term));
        let mut hidden = term;
        hidden.c_lflag &= !(libc::ECHO | libc::ECHONL);
        // SAFETY: a valid termios for a descriptor tcgetattr accepted.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &hidden) };
        Some(EchoOff { _private: () })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        restore_terminal();
        // The typed line was not echoed, so neither was its newline.
        let _ = writeln!(std::io::stderr());
    }
}

/// Put back the terminal settings an open hidden prompt changed (none: nothing to do).
pub fn restore_terminal() {
    if let Some((fd, term)) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // SAFETY: the settings tcgetattr returned for this descriptor.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) };
    }
}

/// Read one line from stdin without echoing it when stdin is a terminal (all of stdin
/// otherwise). The read runs off the async threads, so Ctrl-C interrupts it at once.
#[allow(
    clippy::print_stderr,
    reason = "an interactive prompt: the question goes to the terminal the user types into"
)]
pub async fn read_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        return tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut s).map(|_| s)
        })
        .await?
        .map_err(Into::into);
    }
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let guard = EchoOff::new(0);
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await;
    drop(guard);
    Ok(line??)
}

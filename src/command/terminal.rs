//! Where the command layer writes: the terminal. The only printing in the program happens
//! here and in `main.rs` (clippy's `print_stdout`/`print_stderr` warn everywhere else).

use iac::reporter::Reporter;

/// The library's [`Reporter`] for the `iac` binary: results on stdout, progress and warnings
/// on stderr, one line each.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

/// A terminal that lives as long as the process (the simulation's signal watcher reports from
/// its own thread, then ends the process).
pub static TERMINAL: Terminal = Terminal;

#[allow(clippy::print_stdout, clippy::print_stderr, reason = "the command layer's reporter writes to the terminal")]
impl Reporter for Terminal {
    fn result(&self, line: &str) {
        println!("{line}");
    }
    fn progress(&self, line: &str) {
        eprintln!("{line}");
    }
    fn warning(&self, line: &str) {
        eprintln!("warning: {line}");
    }
}

/// `text` on stdout as it is (it carries its own newlines).
#[allow(clippy::print_stdout, reason = "the command layer prints results")]
pub fn out(text: &str) {
    print!("{text}");
}

/// `text` on stderr as it is.
#[allow(clippy::print_stderr, reason = "the command layer prints messages for people")]
pub fn err(text: &str) {
    eprint!("{text}");
}

//! Bounded waiting. Every wait says what it waits for, reports each change of state, and gives
//! up after its timeout with the last state seen: a wait that can hang is a bug.
//!
//! We poll with plain GETs rather than kube-rs's `await_condition` (a watch): the watch has no
//! timeout of its own and hides intermediate states, while a poll every couple of seconds costs
//! nothing at this scale and lets each step print progress.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout_at};

use super::Error;
use crate::reporter::Reporter;

#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(300), poll: Duration::from_secs(2) }
    }
}

/// What one look at an object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<T> {
    Done(T),
    /// Not yet; the text describes the current state.
    Pending(String),
    /// Will never succeed without a change: stop waiting now.
    Failed(String),
}

/// Call `probe` every `waits.poll` until it reports `Done` or `Failed`, or `waits.timeout` passes.
/// The start, every change of state and the end go to `report` as progress.
pub async fn until<T, F, Fut>(what: &str, waits: Waits, report: &dyn Reporter, mut probe: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Progress<T>, Error>>,
{
    report.progress(&format!("waiting for {what} (timeout {}s)", waits.timeout.as_secs()));
    let start = Instant::now();
    let deadline = start + waits.timeout;
    let mut last = String::new();
    loop {
        let timed_out = || Error::Timeout { what: what.to_owned(), after: waits.timeout, last: last.clone() };
        let Ok(seen) = timeout_at(deadline, probe()).await else {
            return Err(timed_out());
        };
        match seen? {
            Progress::Done(value) => {
                report.progress(&format!("  {what}: done after {:.1}s", start.elapsed().as_secs_f64()));
                return Ok(value);
            }
            Progress::Failed(reason) => return Err(Error::Failed { what: what.to_owned(), reason }),
            Progress::Pending(state) => {
                if state != last {
                    report.progress(&format!("  {what}: {state}"));
                    last = state;
                }
            }
        }
        let next = Instant::now() + waits.poll;
        if next >= deadline {
            sleep_until(deadline).await;
            return Err(Error::Timeout { what: what.to_owned(), after: waits.timeout, last });
        }
        sleep_until(next).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reporter::{Collect, Line, Silent};

    fn fast(timeout_ms: u64) -> Waits {
        Waits { timeout: Duration::from_millis(timeout_ms), poll: Duration::from_millis(10) }
    }

    #[tokio::test]
    async fn returns_when_done() {
        let mut n = 0;
        let said = Collect::default();
        let got = until("thing", fast(2000), &said, || {
            n += 1;
            let p = if n < 3 { Progress::Pending(format!("step {n}")) } else { Progress::Done(n) };
            async move { Ok(p) }
        })
        .await;
        assert_eq!(got.unwrap(), 3);
        // Each change of state once, then the end.
        let lines: Vec<Line> = said.lines();
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[0], Line::Progress("waiting for thing (timeout 2s)".into()));
        assert_eq!(lines[1..3], [Line::Progress("  thing: step 1".into()), Line::Progress("  thing: step 2".into())]);
        assert!(matches!(&lines[3], Line::Progress(l) if l.starts_with("  thing: done after ")), "{lines:?}");
    }

    #[tokio::test]
    async fn fails_fast_on_failure() {
        let got: Result<(), _> =
            until("job", fast(60_000), &Silent, || async { Ok(Progress::Failed("BackoffLimitExceeded".into())) }).await;
        let e = got.unwrap_err().to_string();
        assert_eq!(e, "job failed: BackoffLimitExceeded");
    }

    #[tokio::test]
    async fn times_out_with_last_state() {
        let t = std::time::Instant::now();
        let got: Result<(), _> = until("kafka", fast(200), &Silent, || async { Ok(Progress::Pending("0/1 ready".into())) }).await;
        assert!(t.elapsed() < Duration::from_secs(2));
        let e = got.unwrap_err().to_string();
        assert!(e.starts_with("timed out after 0s waiting for kafka (last seen: 0/1 ready)"), "{e}");
    }

    #[tokio::test]
    async fn a_hanging_probe_is_cut_by_the_timeout() {
        let got: Result<(), _> = until("hang", fast(100), &Silent, std::future::pending).await;
        assert!(matches!(got, Err(Error::Timeout { .. })));
    }
}

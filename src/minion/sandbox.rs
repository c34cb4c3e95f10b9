//! Stray processes: before the minion trusts the work tree (a commit, a push, a git
//! process holding the token, the final diff and bundle), nothing the untrusted side
//! started may still run.
//!
//! A process group is not enough: `setsid` and a double fork leave it. So the minion:
//! * makes itself a child subreaper when it starts (`PR_SET_CHILD_SUBREAPER`), so every
//!   orphan of a process it started is re-parented to it rather than to the container's
//!   init, and stays its descendant however many times it forks or calls `setsid`;
//! * before each sensitive git call, scans `/proc` and sends `SIGKILL` to every process
//!   that is not the minion itself or one of its ancestors: every descendant, and inside
//!   its own PID namespace (the container) every other process too. It scans again until
//!   a scan finds none alive, so a process forked between a scan and its parent's death
//!   is caught by the next scan. A process whose main thread exited while other threads
//!   run (its `/proc/<pid>/stat` says zombie) counts as alive.
//!
//! Only the `lackey minion` process arms this ([`arm`]); library code and unit tests
//! never kill anything.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the minion was armed.
#[derive(Debug, Clone, Copy)]
struct Armed {
    /// The minion runs in its own PID namespace (PID 1, or the child of the container's
    /// init): every process that is not an ancestor is a stray.
    contained: bool,
}

static ARMED: OnceLock<Armed> = OnceLock::new();

/// Arm the sweeps for this process: become a child subreaper and note whether the
/// process runs in its own PID namespace. Returns a line for the log.
pub fn arm() -> String {
    #[cfg(target_os = "linux")]
    let reaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0;
    #[cfg(not(target_os = "linux"))]
    let reaper = false;
    let contained = contained();
    let _ = ARMED.set(Armed { contained });
    format!(
        "stray processes are stopped before each commit, push and the final diff: {}{}",
        if contained {
            "every process of the container but the minion and its ancestors"
        } else {
            "every descendant of the minion (not in a PID namespace of its own)"
        },
        if reaper {
            ""
        } else {
            "; could not become a child subreaper"
        }
    )
}

/// Whether this process is the init of its PID namespace or the direct child of it, in
/// a namespace that is not the host's (the host's has the kernel thread `kthreadd` at 2).
fn contained() -> bool {
    let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
    let host = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd");
    (me == 1 || parent == 1) && !host
}

/// What one sweep did.
#[derive(Debug, Default, Clone)]
pub struct Sweep {
    /// Processes sent SIGKILL.
    pub killed: usize,
    /// Scans of `/proc` made.
    pub scans: usize,
    /// Processes left alone because they belong to another user (kill said EPERM): not
    /// the untrusted side's, which runs as the minion's user without privileges.
    pub foreign: usize,
    pub elapsed: Duration,
}

impl Sweep {
    pub fn describe(&self) -> String {
        format!(
            "{} stray process(es) stopped in {:.1} ms ({} scan(s) of /proc{})",
            self.killed,
            self.elapsed.as_secs_f64() * 1000.0,
            self.scans,
            if self.foreign > 0 {
                format!("; {} process(es) of another user left alone", self.foreign)
            } else {
                String::new()
            }
        )
    }
}

/// Processes kept appearing faster than they were killed.
#[derive(Debug, thiserror::Error)]
#[error("stray processes could not all be stopped: {alive} still alive after {scans} scans of /proc; the commit was not made")]
pub struct SweepError {
    pub alive: usize,
    pub scans: usize,
}

/// Kill every stray process (see the module docs). `None` when not armed.
pub fn sweep() -> Option<Result<Sweep, SweepError>> {
    let armed = *ARMED.get()?;
    Some(sweep_with(armed.contained))
}

/// How long a sweep keeps scanning before it gives up: a process in uninterruptible
/// sleep finishes its system call before it dies; a fork bomb is bounded by the
/// container's pids limit.
const SWEEP_LIMIT: Duration = Duration::from_secs(5);

fn sweep_with(contained: bool) -> Result<Sweep, SweepError> {
    let started = Instant::now();
    let me = unsafe { libc::getpid() };
    let mut out = Sweep::default();
    let mut foreign: HashSet<i32> = HashSet::new();
    loop {
        let table = scan();
        out.scans += 1;
        let ancestors = ancestors(me, &table);
        let strays: Vec<i32> = table
            .iter()
            .filter(|(pid, p)| {
                **pid != me
                    && p.alive
                    && !ancestors.contains(*pid)
                    && !foreign.contains(*pid)
                    && (contained || descends_from(**pid, me, &table))
            })
            .map(|(pid, _)| *pid)
            .collect();
        reap_children(me, &table);
        if strays.is_empty() {
            out.foreign = foreign.len();
            out.elapsed = started.elapsed();
            return Ok(out);
        }
        if started.elapsed() > SWEEP_LIMIT {
            return Err(SweepError {
                alive: strays.len(),
                scans: out.scans,
            });
        }
        for pid in &strays {
            let r = unsafe { libc::kill(*pid, libc::SIGKILL) };
            if r == 0 {
                out.killed += 1;
            } else if std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
                foreign.insert(*pid);
            }
            // ESRCH: it died meanwhile.
        }
        // Give the killed processes a moment to leave the table (after a few scans, so
        // the common case costs no sleep at all).
        if out.scans > 3 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Proc {
    ppid: i32,
    /// Some thread of it is neither a zombie nor dead.
    alive: bool,
}

/// Every process visible in `/proc`.
fn scan() -> HashMap<i32, Proc> {
    let mut table = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return table;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some((state, ppid)) = stat(&format!("/proc/{pid}/stat")) else {
            continue;
        };
        let alive = if matches!(state, 'Z' | 'X' | 'x') {
            // The leader exited; its other threads may not have.
            threads_alive(pid)
        } else {
            true
        };
        table.insert(pid, Proc { ppid, alive });
    }
    table
}

/// The state and parent from a `stat` file (the command name may hold spaces and `)`).
fn stat(path: &str) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn threads_alive(pid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    dir.flatten().any(|t| {
        let tid = t.file_name();
        stat(&format!("/proc/{pid}/task/{}/stat", tid.to_string_lossy()))
            .is_some_and(|(s, _)| !matches!(s, 'Z' | 'X' | 'x'))
    })
}

fn ancestors(me: i32, table: &HashMap<i32, Proc>) -> HashSet<i32> {
    let mut out = HashSet::new();
    // Our own parent may not be in the table (outside our PID namespace it reads 0).
    let mut p = unsafe { libc::getppid() };
    while p > 0 && out.insert(p) {
        p = table.get(&p).map(|q| q.ppid).unwrap_or(0);
    }
    out.remove(&me);
    out
}

fn descends_from(pid: i32, root: i32, table: &HashMap<i32, Proc>) -> bool {
    let mut p = pid;
    let mut seen = HashSet::new();
    while p > 0 && seen.insert(p) {
        match table.get(&p) {
            Some(q) if q.ppid == root => return true,
            Some(q) => p = q.ppid,
            None => return false,
        }
    }
    false
}

/// Collect the zombies re-parented to the minion (it is their subreaper, or PID 1):
/// only those `/proc` shows as its children and dead, so no live child is waited for.
fn reap_children(me: i32, table: &HashMap<i32, Proc>) {
    for (pid, p) in table {
        if p.ppid == me && !p.alive {
            unsafe {
                libc::waitpid(*pid, std::ptr::null_mut(), libc::WNOHANG);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names_parse() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stat");
        std::fs::write(&p, "42 (a) b (c)) S 7 42 42 0 -1\n").unwrap();
        assert_eq!(stat(p.to_str().unwrap()), Some(('S', 7)));
    }

    #[test]
    fn descent_follows_parents_and_survives_loops() {
        let t: HashMap<i32, Proc> = [(10, 1), (11, 10), (12, 11), (20, 1), (30, 31), (31, 30)]
            .into_iter()
            .map(|(p, pp)| {
                (
                    p,
                    Proc {
                        ppid: pp,
                        alive: true,
                    },
                )
            })
            .collect();
        assert!(descends_from(12, 10, &t));
        assert!(descends_from(11, 10, &t));
        assert!(!descends_from(20, 10, &t));
        assert!(!descends_from(30, 10, &t));
    }
}

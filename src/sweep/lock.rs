//! Per-run locks that survive a crashed holder. A lock is a small file created exclusively; it
//! names its holder (host, boot id, pid, process start time), so a worker on the same machine
//! can tell at once whether the holder is alive, and its modification time is a heartbeat that
//! workers on other machines judge it by. Breaking a stale lock is a compare-and-swap: the
//! breaker renames the lock away and checks that what it moved is the lock it judged stale.

use crate::error::{Error, Result};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Who holds a lock, as written in the lock file (`key=value` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`: pids are only comparable within one boot.
    pub boot_id: String,
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks after boot); tells a reused pid apart.
    pub proc_start: u64,
    /// Seconds since the Unix epoch when the lock was taken.
    pub since: u64,
    /// Makes every lock's text unique, so a lock is never mistaken for an earlier one.
    pub nonce: u64,
}

impl Holder {
    fn to_text(&self) -> String {
        format!(
            "host={}\nboot_id={}\npid={}\nproc_start={}\nsince={}\nnonce={}\n",
            self.host, self.boot_id, self.pid, self.proc_start, self.since, self.nonce
        )
    }

    fn parse(text: &str) -> Option<Holder> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Holder {
            host: field("host")?,
            boot_id: field("boot_id")?,
            pid: field("pid")?.parse().ok()?,
            proc_start: field("proc_start")?.parse().ok()?,
            since: field("since")?.parse().ok()?,
            nonce: field("nonce")?.parse().ok()?,
        })
    }
}

/// What a lock file says about its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    Free,
    /// Held by a live (or not yet stale) holder; `age` is the time since its last heartbeat.
    Held {
        holder: Option<Holder>,
        age: Duration,
    },
    /// Left by a holder judged dead: the next worker takes it over.
    Stale {
        holder: Option<Holder>,
        reason: String,
    },
}

/// The identity of this process, read once.
struct Me {
    host: String,
    boot_id: String,
    pid: u32,
    proc_start: u64,
}

fn me() -> &'static Me {
    static ME: OnceLock<Me> = OnceLock::new();
    ME.get_or_init(|| {
        let read = |p: &str| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let pid = std::process::id();
        Me {
            host: read("/proc/sys/kernel/hostname")
                .or_else(|| std::env::var("HOSTNAME").ok())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown-host".into()),
            boot_id: read("/proc/sys/kernel/random/boot_id").unwrap_or_default(),
            pid,
            proc_start: process_start(pid).map_or(0, |(start, _)| start),
        }
    })
}

/// This machine's host name, as locks record it.
pub fn host_name() -> &'static str {
    &me().host
}

/// The start time and state letter of process `pid`, from `/proc/<pid>/stat`.
fn process_start(pid: u32) -> Option<(u64, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((fields.get(19)?.parse().ok()?, state))
}

/// Whether the holder is provably gone, when it lives on this machine and `/proc` can say.
fn holder_gone(h: &Holder) -> Option<bool> {
    let me = me();
    if h.host != me.host || me.boot_id.is_empty() || me.proc_start == 0 {
        return None;
    }
    if h.boot_id != me.boot_id {
        return Some(true); // the machine rebooted since: every process of that boot is gone
    }
    Some(match process_start(h.pid) {
        None => true,
        Some((_, 'Z' | 'X')) => true,
        Some((start, _)) => start != h.proc_start,
    })
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a lock: its text (None when there is no lock) and the time since its last heartbeat.
fn read_lock(path: &Path) -> Result<Option<(String, Duration)>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let modified = match fs::metadata(path).and_then(|m| m.modified()) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path, e)),
    };
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or(Duration::ZERO);
    Ok(Some((text, age)))
}

/// Applies the staleness rule to a lock's text and heartbeat age.
fn judge(text: &str, age: Duration, stale_after: Duration) -> LockState {
    let holder = Holder::parse(text);
    match holder.as_ref().and_then(holder_gone) {
        Some(true) => LockState::Stale {
            holder,
            reason: "its process on this host is gone".into(),
        },
        Some(false) => LockState::Held { holder, age },
        None if age > stale_after => LockState::Stale {
            holder,
            reason: format!("no heartbeat for {} s", age.as_secs()),
        },
        None => LockState::Held { holder, age },
    }
}

/// The state of the lock at `path`.
pub fn inspect(path: &Path, stale_after: Duration) -> Result<LockState> {
    Ok(match read_lock(path)? {
        None => LockState::Free,
        Some((text, age)) => judge(&text, age, stale_after),
    })
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name beside `path` for a temporary file.
fn side_name(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{tag}-{}-{}-{}",
        me().host,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Creates `path` with `text` unless it exists. Hard-linking a complete temporary file makes
/// creation and content one atomic step (no empty lock is ever visible); where hard links are
/// unsupported, an exclusive create followed by the write is the fallback.
fn create_exclusive(path: &Path, text: &str) -> Result<bool> {
    let tmp = side_name(path, "tmp");
    fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(_) => match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut f) => f
                .write_all(text.as_bytes())
                .map(|()| true)
                .map_err(|e| io_error(path, e)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_error(path, e)),
        },
    }
}

/// A lock this process holds.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    text: String,
}

impl RunLock {
    /// Takes the lock at `path`, breaking it first if it is stale; `None` when a live holder
    /// has it.
    pub fn try_acquire(path: &Path, stale_after: Duration) -> Result<Option<RunLock>> {
        let me = me();
        let holder = Holder {
            host: me.host.clone(),
            boot_id: me.boot_id.clone(),
            pid: me.pid,
            proc_start: me.proc_start,
            since: now_unix(),
            // Unique within the process; with pid and start time, unique everywhere.
            nonce: COUNTER.fetch_add(1, Ordering::Relaxed),
        };
        let text = holder.to_text();
        // Each round either takes the lock, finds a live holder, or removes one stale lock; a
        // few rounds cover losing races to other workers breaking the same lock.
        for _ in 0..4 {
            if create_exclusive(path, &text)? {
                return Ok(Some(RunLock {
                    path: path.to_path_buf(),
                    text,
                }));
            }
            let Some((seen, age)) = read_lock(path)? else {
                continue; // released meanwhile
            };
            if !matches!(judge(&seen, age, stale_after), LockState::Stale { .. }) {
                return Ok(None);
            }
            let grave = side_name(path, "stale");
            match fs::rename(path, &grave) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => continue, // another worker broke it
                Err(e) => return Err(io_error(path, e)),
            }
            let moved = fs::read_to_string(&grave).unwrap_or_default();
            if moved != seen {
                // A new holder took the lock between our read and the rename: give it back. If
                // a third worker created one meanwhile, the moved holder sees its lock replaced
                // at its next heartbeat and stops; the run is never finished twice either way.
                let _ = fs::hard_link(&grave, path);
                let _ = fs::remove_file(&grave);
                return Ok(None);
            }
            let _ = fs::remove_file(&grave);
        }
        Ok(None)
    }

    /// Whether the lock file is still this holder's (a holder judged dead by mistake, e.g. a
    /// suspended process on another host, may have been replaced).
    pub fn is_ours(&self) -> bool {
        fs::read_to_string(&self.path).is_ok_and(|t| t == self.text)
    }

    /// The heartbeat: touches the lock if it is still ours; returns whether it is.
    pub fn beat(&self) -> Result<bool> {
        if !self.is_ours() {
            return Ok(false);
        }
        let touched = fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        touched.map(|()| true).map_err(|e| io_error(&self.path, e))
    }

    /// Removes the lock if it is still ours.
    pub fn release(self) -> Result<()> {
        if self.is_ours() {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&self.path, e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("contrastive-lock-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    const LONG: Duration = Duration::from_secs(300);

    #[test]
    fn exclusive_until_released() {
        let dir = temp_dir("excl");
        let path = dir.join("lock");
        let a = RunLock::try_acquire(&path, LONG)
            .unwrap()
            .expect("free lock");
        assert!(
            RunLock::try_acquire(&path, LONG).unwrap().is_none(),
            "a live holder keeps it"
        );
        assert!(matches!(
            inspect(&path, LONG).unwrap(),
            LockState::Held { .. }
        ));
        assert!(a.beat().unwrap());
        a.release().unwrap();
        assert_eq!(inspect(&path, LONG).unwrap(), LockState::Free);
        assert!(RunLock::try_acquire(&path, LONG).unwrap().is_some());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dead_local_holder_is_taken_over_at_once() {
        if me().proc_start == 0 {
            return; // no /proc: only the heartbeat rule applies, tested below
        }
        let dir = temp_dir("dead");
        let path = dir.join("lock");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let m = me();
        let dead = Holder {
            host: m.host.clone(),
            boot_id: m.boot_id.clone(),
            pid,
            proc_start: 1,
            since: 0,
            nonce: 7,
        };
        fs::write(&path, dead.to_text()).unwrap();
        assert!(matches!(
            inspect(&path, LONG).unwrap(),
            LockState::Stale { .. }
        ));
        let lock = RunLock::try_acquire(&path, LONG)
            .unwrap()
            .expect("stale lock taken over");
        assert!(lock.is_ours());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn other_hosts_are_judged_by_heartbeat_and_a_replaced_holder_notices() {
        let dir = temp_dir("remote");
        let path = dir.join("lock");
        let remote = Holder {
            host: "some-other-node".into(),
            boot_id: "b".into(),
            pid: 1,
            proc_start: 1,
            since: 0,
            nonce: 1,
        };
        fs::write(&path, remote.to_text()).unwrap();
        assert!(
            RunLock::try_acquire(&path, LONG).unwrap().is_none(),
            "fresh heartbeat"
        );
        let old = SystemTime::now() - Duration::from_secs(600);
        fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let lock = RunLock::try_acquire(&path, LONG)
            .unwrap()
            .expect("heartbeat too old");
        fs::write(&path, remote.to_text()).unwrap(); // someone replaced us
        assert!(!lock.beat().unwrap());
        lock.release().unwrap();
        assert!(path.exists(), "release leaves a lock that is not ours");
        let _ = fs::remove_dir_all(&dir);
    }
}

//! A run's artifact directory, as the host touches it.
//!
//! A local run's directory is bind-mounted writable into the container, so anything in
//! it may have been planted by a hostile process (a symbolic link to a host file, a FIFO,
//! a hard link, a file of many gigabytes), and that process may still be changing it
//! while the host looks. Every access therefore goes through a handle on the directory
//! itself, opened without following a link, and works on one name at a time:
//!
//! * reads open the name with `O_NOFOLLOW | O_NONBLOCK` relative to that handle, accept
//!   only a regular file with a single link, and read at most a given number of bytes;
//! * writes never open an existing name: the host creates a fresh file under a random
//!   name with `O_CREAT | O_EXCL | O_NOFOLLOW` (which fails on anything already there,
//!   links included), writes it, and renames it over the final name. A rename replaces
//!   a planted link instead of following it, and a racing process can at most swap the
//!   file afterwards, which readers treat as untrusted data anyway.
//!
//! Each step is one system call on one name, so there is no window between a check and
//! a use for a process in the container to exploit. See docs/artifacts.md.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The most the host reads of one artifact (logs, transcripts, diffs).
pub const MAX_ARTIFACT_BYTES: u64 = 256 * 1024 * 1024;
/// The most the host reads of `run_summary.json`.
pub const MAX_SUMMARY_BYTES: u64 = 16 * 1024 * 1024;
/// The most the host accepts of `repo.bundle`.
pub const MAX_BUNDLE_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// The names the host accepts into a run directory from elsewhere (a cloud run's
/// download), each with the most it takes of it; `None` for any other name.
pub fn accepted(name: &str) -> Option<u64> {
    match name {
        "run_summary.json" => Some(MAX_SUMMARY_BYTES),
        "repo.bundle" => Some(MAX_BUNDLE_BYTES),
        n if crate::summary::ARTIFACTS.contains(&n) => Some(MAX_ARTIFACT_BYTES),
        _ => None,
    }
}

/// Every name [`accepted`] takes.
pub fn accepted_names() -> impl Iterator<Item = &'static str> {
    crate::summary::ARTIFACTS
        .iter()
        .copied()
        .chain(std::iter::once("repo.bundle"))
}

/// An open run directory; every name is looked up relative to it, never followed.
pub struct RunDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What a name in the directory is, seen without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Missing,
    File,
    Other,
}

fn cname(name: &str) -> io::Result<CString> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{name}` is not a plain file name"),
        ));
    }
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl RunDir {
    /// Open `path`, which must be a directory and not a link.
    pub fn open(path: &Path) -> io::Result<RunDir> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
        let fd = check(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        Ok(RunDir {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `name` is, without following a link.
    pub fn entry(&self, name: &str) -> io::Result<Entry> {
        let c = cname(name)?;
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::NotFound {
                Ok(Entry::Missing)
            } else {
                Err(e)
            };
        }
        Ok(if st.st_mode & libc::S_IFMT == libc::S_IFREG {
            Entry::File
        } else {
            Entry::Other
        })
    }

    /// Open `name` for reading: a regular file with one link, never through a link.
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c = cname(name)?;
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        })
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("`{name}` is a symbolic link"),
                )
            } else {
                e
            }
        })?;
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        use std::os::unix::fs::MetadataExt;
        if !meta.file_type().is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{name}` is not a regular file"),
            ));
        }
        if meta.nlink() != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{name}` has {} hard links", meta.nlink()),
            ));
        }
        Ok(file)
    }

    /// At most `cap` bytes of `name`, and whether there was more.
    pub fn read_capped(&self, name: &str, cap: u64) -> io::Result<(Vec<u8>, bool)> {
        let file = self.open_file(name)?;
        let mut buf = Vec::new();
        file.take(cap + 1).read_to_end(&mut buf)?;
        let more = buf.len() as u64 > cap;
        buf.truncate(cap as usize);
        Ok((buf, more))
    }

    /// The last `cap` bytes of `name`, and whether anything came before them.
    pub fn read_tail(&self, name: &str, cap: u64) -> io::Result<(Vec<u8>, bool)> {
        use std::io::{Seek, SeekFrom};
        let mut file = self.open_file(name)?;
        let len = file.metadata()?.len();
        let cut = len > cap;
        if cut {
            file.seek(SeekFrom::Start(len - cap))?;
        }
        let mut buf = Vec::new();
        file.take(cap).read_to_end(&mut buf)?;
        Ok((buf, cut))
    }

    /// The whole of `name`, refused when it is longer than `cap`.
    pub fn read(&self, name: &str, cap: u64) -> io::Result<Vec<u8>> {
        let (buf, more) = self.read_capped(name, cap)?;
        if more {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("`{name}` is larger than {cap} bytes"),
            ));
        }
        Ok(buf)
    }

    /// Put `bytes` at `name`: a new file under a random name, renamed over `name`. What
    /// was at `name` (a link included) is replaced, never written through.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let (mut file, tmp) = self.create_temp()?;
        let done = file.write_all(bytes).and_then(|_| self.commit(&tmp, name));
        if done.is_err() {
            self.discard(&tmp);
        }
        done
    }

    /// A new, empty file under a fresh random name (`O_CREAT | O_EXCL | O_NOFOLLOW`: it
    /// never opens anything that was already there). [`RunDir::commit`] puts it in place.
    pub fn create_temp(&self) -> io::Result<(File, String)> {
        let tmp_name = format!(".lackey-host-{:016x}.tmp", rand::random::<u64>());
        let tmp = cname(&tmp_name)?;
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                tmp.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644 as libc::c_uint,
            )
        })?;
        Ok((unsafe { File::from_raw_fd(fd) }, tmp_name))
    }

    /// Rename `tmp` over `name` (replacing what is there, a link included, not following it).
    pub fn commit(&self, tmp: &str, name: &str) -> io::Result<()> {
        let (from, to) = (cname(tmp)?, cname(name)?);
        check(unsafe {
            libc::renameat(
                self.fd.as_raw_fd(),
                from.as_ptr(),
                self.fd.as_raw_fd(),
                to.as_ptr(),
            )
        })
        .map(|_| ())
    }

    /// Remove a temporary file that will not be committed.
    pub fn discard(&self, tmp: &str) {
        if let Ok(c) = cname(tmp) {
            unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        }
    }

    /// Make `name` a regular file: leave one that is there, replace anything else (a
    /// link, a FIFO) with `bytes`. Returns whether it wrote.
    pub fn fill(&self, name: &str, bytes: &[u8]) -> io::Result<bool> {
        if self.entry(name)? == Entry::File {
            return Ok(false);
        }
        self.replace(name, bytes)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_neither_read_nor_written_through() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("run");
        std::fs::create_dir(&run).unwrap();
        let canary = tmp.path().join("canary");
        std::fs::write(&canary, "secret canary").unwrap();
        std::os::unix::fs::symlink(&canary, run.join("minion.log")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), run.join("diff.patch")).unwrap();
        std::fs::hard_link(&canary, run.join("scope.json")).unwrap();
        std::fs::write(run.join("commands.log"), "0123456789").unwrap();

        let dir = RunDir::open(&run).unwrap();
        for name in ["minion.log", "diff.patch", "scope.json"] {
            let e = dir.read(name, 1024).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}: {e}");
        }
        assert_eq!(dir.entry("minion.log").unwrap(), Entry::Other);
        assert_eq!(dir.entry("nothing").unwrap(), Entry::Missing);
        assert!(dir.read("../canary", 1024).is_err());
        assert_eq!(
            dir.read_capped("commands.log", 4).unwrap(),
            (b"0123".to_vec(), true)
        );
        assert!(dir.read("commands.log", 4).is_err());
        assert_eq!(dir.read("commands.log", 10).unwrap(), b"0123456789");

        // Writing replaces the link and leaves its target alone.
        dir.replace("minion.log", b"host text").unwrap();
        assert!(dir.fill("diff.patch", b"").unwrap());
        assert!(!dir.fill("commands.log", b"").unwrap());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "secret canary");
        assert_eq!(dir.read("minion.log", 1024).unwrap(), b"host text");
        assert_eq!(dir.entry("diff.patch").unwrap(), Entry::File);
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // The directory itself is not opened through a link.
        std::os::unix::fs::symlink(&run, tmp.path().join("alias")).unwrap();
        assert!(RunDir::open(&tmp.path().join("alias")).is_err());
    }
}

//! Reading a `git-receive-pack` request well enough to judge it: the pkt-line command
//! list, and — when a branch is updated rather than created — the pack's commits, to
//! prove that the update is a fast-forward.
//!
//! The request body of a push over smart HTTP is: pkt-lines `<old> <new> <ref>` (the
//! first one followed by a NUL and the client's capabilities), a flush packet `0000`,
//! then a pack (`PACK`, version, object count, the objects) unless every command is a
//! delete. Git's receive-pack only applies a command when the ref's current value is
//! `<old>` (and, for an all-zero `<old>`, when the ref does not exist yet), so a command
//! whose `<new>` provably descends from `<old>` cannot rewrite history.
//!
//! The proof walks parent links from `<new>` to `<old>` through the commits of the pack
//! itself, hashing each commit to learn its id. To do that without a full inflater the
//! pack must be stored, not compressed (`git -c pack.compression=0 -c pack.window=0`):
//! every object's zlib stream then consists of "stored" blocks, and no object is a
//! delta. Anything else cannot be proven here and is refused.

use sha1::{Digest, Sha1};

/// One command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub old: String,
    pub new: String,
    pub refname: String,
}

impl Command {
    pub fn is_create(&self) -> bool {
        is_zero(&self.old)
    }
    pub fn is_delete(&self) -> bool {
        is_zero(&self.new)
    }
}

fn is_zero(id: &str) -> bool {
    id.bytes().all(|b| b == b'0')
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The command list of a receive-pack request, its capabilities, and where the rest
/// (the pack) starts.
#[derive(Debug)]
pub struct PushRequest {
    pub commands: Vec<Command>,
    pub capabilities: Vec<String>,
    pub pack_at: usize,
}

/// Split the pkt-lines of a receive-pack request up to its first flush packet.
pub fn parse_push(body: &[u8]) -> Result<PushRequest, String> {
    let mut at = 0;
    let mut commands = Vec::new();
    let mut capabilities = Vec::new();
    loop {
        let Some(len_hex) = body.get(at..at + 4) else {
            return Err("the command list ends before its flush packet".into());
        };
        let len_str = std::str::from_utf8(len_hex).map_err(|_| "a pkt-line length is not hex")?;
        let len = usize::from_str_radix(len_str, 16)
            .map_err(|_| format!("`{}` is not a pkt-line length", len_str.escape_debug()))?;
        if len == 0 {
            at += 4;
            break;
        }
        if len < 4 {
            return Err(format!("unexpected special packet {len_str} in a push"));
        }
        let Some(line) = body.get(at + 4..at + len) else {
            return Err("a pkt-line runs past the end of the request".into());
        };
        at += len;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let (cmd, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps {
            if !commands.is_empty() {
                return Err("capabilities after the first command".into());
            }
            capabilities = String::from_utf8_lossy(caps)
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
        }
        let cmd = std::str::from_utf8(cmd).map_err(|_| "a command is not UTF-8")?;
        if cmd.starts_with("shallow ") || cmd.starts_with("push-cert") {
            return Err(format!(
                "`{}` is not supported through the proxy",
                cmd.split(' ').next().unwrap_or(cmd)
            ));
        }
        let mut parts = cmd.splitn(3, ' ');
        let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!("malformed command `{}`", cmd.escape_debug()));
        };
        if !is_object_id(old) || !is_object_id(new) || refname.is_empty() {
            return Err(format!("malformed command `{}`", cmd.escape_debug()));
        }
        commands.push(Command {
            old: old.to_string(),
            new: new.to_string(),
            refname: refname.to_string(),
        });
    }
    if commands.is_empty() {
        return Err("a push with no command".into());
    }
    Ok(PushRequest {
        commands,
        capabilities,
        pack_at: at,
    })
}

/// The payload of a zlib stream made only of stored blocks, and the bytes it took.
fn stored_zlib(data: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let compressed = || {
        "the pack is compressed; push with `-c pack.compression=0 -c pack.window=0` so the update can be checked".to_string()
    };
    let (Some(&cmf), Some(&flg)) = (data.first(), data.get(1)) else {
        return Err("the pack ends inside an object".into());
    };
    if cmf & 0x0f != 8 || (u16::from(cmf) * 256 + u16::from(flg)) % 31 != 0 || flg & 0x20 != 0 {
        return Err("an object of the pack is not a zlib stream".into());
    }
    let mut at = 2;
    let mut out = Vec::new();
    loop {
        let Some(&head) = data.get(at) else {
            return Err("the pack ends inside an object".into());
        };
        // A stored block: BFINAL, BTYPE 00, padding to the byte, LEN, NLEN.
        if head & 0b110 != 0 || head & !0b111 != 0 {
            return Err(compressed());
        }
        let Some(h) = data.get(at + 1..at + 5) else {
            return Err("the pack ends inside an object".into());
        };
        let len = u16::from_le_bytes([h[0], h[1]]);
        let nlen = u16::from_le_bytes([h[2], h[3]]);
        if len != !nlen {
            return Err("a stored block of the pack is corrupt".into());
        }
        let start = at + 5;
        let Some(chunk) = data.get(start..start + usize::from(len)) else {
            return Err("the pack ends inside an object".into());
        };
        out.extend_from_slice(chunk);
        at = start + usize::from(len);
        if head & 1 == 1 {
            break;
        }
    }
    let Some(sum) = data.get(at..at + 4) else {
        return Err("the pack ends inside an object".into());
    };
    if u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) != adler32(&out) {
        return Err("an object of the pack fails its checksum".into());
    }
    Ok((out, at + 4))
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// The commits of a stored, undeltified pack: id → parent ids.
pub fn pack_commits(pack: &[u8]) -> Result<Vec<(String, Vec<String>)>, String> {
    if pack.get(..4) != Some(b"PACK") {
        return Err("the push carries no pack".into());
    }
    let Some(head) = pack.get(4..12) else {
        return Err("the pack's header is cut short".into());
    };
    let version = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if version != 2 && version != 3 {
        return Err(format!("pack version {version} is not supported"));
    }
    let count = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let mut at = 12;
    let mut commits = Vec::new();
    for _ in 0..count {
        let Some(&first) = pack.get(at) else {
            return Err("the pack ends before its last object".into());
        };
        at += 1;
        let kind = (first >> 4) & 7;
        let mut size = u64::from(first & 0x0f);
        let mut shift = 4;
        let mut byte = first;
        while byte & 0x80 != 0 {
            let Some(&b) = pack.get(at) else {
                return Err("the pack ends inside an object header".into());
            };
            at += 1;
            if shift > 57 {
                return Err("an object of the pack claims an impossible size".into());
            }
            size |= u64::from(b & 0x7f) << shift;
            shift += 7;
            byte = b;
        }
        let name = match kind {
            1 => "commit",
            2 => "tree",
            3 => "blob",
            4 => "tag",
            6 | 7 => return Err(
                "the pack holds deltas; push with `-c pack.window=0` so the update can be checked"
                    .into(),
            ),
            k => return Err(format!("the pack holds an object of unknown type {k}")),
        };
        let (content, used) = stored_zlib(&pack[at..])?;
        at += used;
        if content.len() as u64 != size {
            return Err("an object of the pack is not the size its header says".into());
        }
        if kind == 1 {
            let mut h = Sha1::new();
            h.update(format!("{name} {}\0", content.len()).as_bytes());
            h.update(&content);
            let id = hex::encode(h.finalize());
            commits.push((id, commit_parents(&content)?));
        }
    }
    Ok(commits)
}

/// A commit's parents as git reads them: the `parent <id>` lines right after its
/// `tree` line. A `parent` header anywhere else (git ignores it, and fsck lets it pass
/// after `committer`) would make a root commit look like a descendant here, so such a
/// commit is refused rather than read two ways.
fn commit_parents(content: &[u8]) -> Result<Vec<String>, String> {
    let headers = content.split(|&b| b == b'\n').take_while(|l| !l.is_empty());
    let is_id = |h: &[u8]| {
        (h.len() == 40 || h.len() == 64)
            && h.iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let mut parents = Vec::new();
    let mut in_parents = false;
    for (i, line) in headers.enumerate() {
        if i == 0 {
            match line.strip_prefix(b"tree ") {
                Some(t) if is_id(t) => in_parents = true,
                _ => return Err("a pushed commit does not start with its tree".into()),
            }
            continue;
        }
        match line.strip_prefix(b"parent ") {
            Some(p) if in_parents && is_id(p) => {
                parents.push(String::from_utf8_lossy(p).into_owned());
            }
            Some(_) => {
                return Err(
                    "a pushed commit has a `parent` header git would not read as a parent".into(),
                )
            }
            None => in_parents = false,
        }
    }
    Ok(parents)
}

/// Whether `new` provably descends from `old`, through the commits of `pack`.
pub fn proves_fast_forward(pack: &[u8], old: &str, new: &str) -> Result<(), String> {
    if old == new {
        return Ok(());
    }
    let commits: std::collections::HashMap<String, Vec<String>> =
        pack_commits(pack)?.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    let mut todo = vec![new.to_string()];
    while let Some(c) = todo.pop() {
        if c == old {
            return Ok(());
        }
        if !seen.insert(c.clone()) {
            continue;
        }
        if let Some(parents) = commits.get(&c) {
            todo.extend(parents.iter().cloned());
        }
    }
    Err(format!(
        "not a fast-forward: {} does not descend from {} through the pushed commits",
        short(new),
        short(old)
    ))
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// One pkt-line (for building requests in tests and tools).
pub fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{:04x}", payload.len() + 4).into_bytes();
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parent_lines_right_after_the_tree_are_parents() {
        let (t, p1, p2) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let commit = |headers: &str| format!("{headers}\n\nmessage\nparent {p2}\n");
        assert_eq!(
            commit_parents(commit(&format!("tree {t}\nparent {p1}\nparent {p2}\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000")).as_bytes()),
            Ok(vec![p1.clone(), p2.clone()])
        );
        // A root commit: the message's `parent` line is no header.
        assert_eq!(
            commit_parents(
                commit(&format!(
                    "tree {t}\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000"
                ))
                .as_bytes()
            ),
            Ok(vec![])
        );
        // A `parent` header after the author (git: a root commit) is refused, as is a
        // malformed one or a commit without its tree first.
        for bad in [
            format!("tree {t}\nauthor a <a> 1 +0000\ncommitter a <a> 1 +0000\nparent {p1}"),
            format!("tree {t}\nparent {p1}\nauthor a <a> 1 +0000\nparent {p2}"),
            format!("tree {t}\nparent {}", p1.to_uppercase()),
            format!("tree {t}\nparent  {p1}"),
            format!("parent {p1}\ntree {t}"),
        ] {
            assert!(commit_parents(commit(&bad).as_bytes()).is_err(), "{bad}");
        }
    }

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const Z: &str = "0000000000000000000000000000000000000000";

    fn request(lines: &[&str]) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let mut p = l.as_bytes().to_vec();
            if i == 0 {
                p.extend_from_slice(b"\0report-status side-band-64k agent=git/2.39");
            }
            p.push(b'\n');
            body.extend(pkt_line(&p));
        }
        body.extend_from_slice(b"0000PACK");
        body
    }

    #[test]
    fn parses_the_command_list_and_finds_the_pack() {
        let body = request(&[
            &format!("{Z} {A} refs/heads/minion/x"),
            &format!("{A} {Z} refs/heads/main"),
        ]);
        let p = parse_push(&body).unwrap();
        assert_eq!(p.commands.len(), 2);
        assert!(p.commands[0].is_create());
        assert_eq!(p.commands[0].refname, "refs/heads/minion/x");
        assert!(p.commands[1].is_delete());
        assert_eq!(&body[p.pack_at..], b"PACK");
        assert!(p.capabilities.contains(&"report-status".to_string()));
    }

    #[test]
    fn malformed_command_lists_are_refused() {
        for (body, want) in [
            (b"00".to_vec(), "ends before its flush"),
            (b"zzzz".to_vec(), "not a pkt-line length"),
            (b"0001".to_vec(), "special packet"),
            (b"0000".to_vec(), "no command"),
            (b"00ff1234".to_vec(), "runs past the end"),
            (pkt_line(b"not a command"), "malformed command"),
            (
                [pkt_line(format!("{A} {B}").as_bytes()), b"0000".to_vec()].concat(),
                "malformed command",
            ),
            (
                [
                    pkt_line(format!("shallow {A}").as_bytes()),
                    b"0000".to_vec(),
                ]
                .concat(),
                "not supported",
            ),
        ] {
            let err = parse_push(&body).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
    }

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {:?}", out);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// A pack of the objects in `range`, as `git pack-objects` makes it with `extra`.
    fn pack(dir: &std::path::Path, range: &str, extra: &[&str]) -> Vec<u8> {
        use std::io::Write;
        let revs = git(dir, &["rev-list", "--objects", range]);
        let mut c = std::process::Command::new("git")
            .args(["pack-objects", "--stdout"])
            .args(extra)
            .current_dir(dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ids: String = revs
            .lines()
            .map(|l| l.split(' ').next().unwrap().to_string() + "\n")
            .collect();
        c.stdin.take().unwrap().write_all(ids.as_bytes()).unwrap();
        c.wait_with_output().unwrap().stdout
    }

    #[test]
    fn a_real_stored_pack_proves_a_fast_forward_and_refuses_a_rewrite() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        git(dir, &["init", "-q", "-b", "main"]);
        std::fs::write(dir.join("a.txt"), "one\n").unwrap();
        git(dir, &["add", "."]);
        git(dir, &["commit", "-qm", "one"]);
        let old = git(dir, &["rev-parse", "HEAD"]);
        for i in 0..3 {
            std::fs::write(dir.join("a.txt"), format!("line {i}\n").repeat(200)).unwrap();
            git(dir, &["commit", "-qam", &format!("c{i}")]);
        }
        let new = git(dir, &["rev-parse", "HEAD"]);
        let stored = pack(
            dir,
            &format!("{old}..{new}"),
            &["--compression=0", "--window=0"],
        );
        let commits = pack_commits(&stored).unwrap();
        assert_eq!(commits.len(), 3, "{commits:?}");
        proves_fast_forward(&stored, &old, &new).unwrap();
        // A rewrite: a commit beside `old`, not after it.
        git(dir, &["checkout", "-q", "--orphan", "other"]);
        git(dir, &["commit", "-qm", "rewritten"]);
        let forced = git(dir, &["rev-parse", "HEAD"]);
        let p = pack(dir, &forced.to_string(), &["--compression=0", "--window=0"]);
        let err = proves_fast_forward(&p, &old, &forced).unwrap_err();
        assert!(err.starts_with("not a fast-forward"), "{err}");
        // A compressed pack cannot be read here, so it is refused, not trusted.
        let compressed = pack(dir, &format!("{old}..{new}"), &[]);
        let err = proves_fast_forward(&compressed, &old, &new).unwrap_err();
        assert!(err.contains("pack.compression=0"), "{err}");
        // Cut short, or with a flipped byte in a stored object: refused.
        let err = pack_commits(&stored[..stored.len() / 2]).unwrap_err();
        assert!(err.contains("ends"), "{err}");
        let mut bad = stored.clone();
        let i = bad.len() - 40;
        bad[i] ^= 0x55;
        assert!(pack_commits(&bad).is_err());
    }

    #[test]
    fn adler32_matches_the_reference() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}

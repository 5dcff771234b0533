//! Plain-text conversation logs (setting `log-conversations`): each record the terminal UI shows
//! is appended, once, as one line to the file of its conversation,
//! `$XDG_STATE_HOME/gc-client/logs/<server>-<user>/<room>.log`:
//!
//! ```text
//! 2023-11-14 22:13:20 <alice> hello⏎second line
//! 2023-11-14 22:13:25 -- bob joined #dev
//! ```
//!
//! The time is UTC (a log outlives the zone it was written in, and the wire's times are UTC);
//! the text is made harmless as in headless output ([`crate::display::plain_text`]: a newline
//! shows as `⏎`, control characters as symbols), so a line is one record. The newest id written
//! to each file is kept in `last-ids` beside them (`ROOM ID` lines, as the read markers), so a
//! restart that shows the cached backlog again does not write it twice. Files are 0600 and
//! directories 0700 ([`gc_store::private`]).

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use gc_protocol::{Record, Room};

use super::marks::{self, Marks};
use crate::display::{plain_text, sanitize, utc};

/// The conversation logs of one account on one server.
#[derive(Debug)]
pub struct ConvLogs {
    dir: PathBuf,
    /// The newest record id written, per conversation.
    last: Marks,
    /// Open files, per conversation (appending).
    files: HashMap<Room, std::fs::File>,
}

/// The directory of `server`'s logs for `user` under `base` (`…/gc-client/logs`): one per
/// account, as a direct conversation is one account's; the server part keeps `A-Z a-z 0-9 . -`
/// and the user is lower-cased, as the cache's directory.
pub fn dir_for(base: &Path, server: &str, user: &str) -> PathBuf {
    let safe: String = server
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    base.join(format!("{safe}-{}", file_part(&user.to_ascii_lowercase())))
}

/// A conversation's file name: `#dev` is `dev.log`, `@alice+bob` is `@alice+bob.log`. Room
/// names are restricted by the protocol already; anything else is replaced all the same, and
/// a name never starts with a dot.
pub fn file_name(room: &Room) -> String {
    let name = room.as_str();
    format!("{}.log", file_part(name.strip_prefix('#').unwrap_or(name)))
}

fn file_part(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// One record as a log line (without its newline).
pub fn line(record: &Record) -> String {
    let time = utc(record.timestamp).format("%Y-%m-%d %H:%M:%S");
    if record.username.is_reserved() {
        format!("{time} -- {}", plain_text(&record.body))
    } else {
        format!(
            "{time} <{}> {}",
            sanitize(record.username.as_str()),
            plain_text(&record.body)
        )
    }
}

impl ConvLogs {
    /// The logs in `dir` (made 0700 if missing), with what was written to them before.
    pub fn open(dir: PathBuf) -> io::Result<Self> {
        gc_store::private::create_dirs(&dir)?;
        let last = marks::load(&dir.join("last-ids"));
        Ok(Self {
            dir,
            last,
            files: HashMap::new(),
        })
    }

    /// Where the logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends each record newer than what its conversation's file holds (in the order given,
    /// which is id order per conversation), then notes how far each file goes.
    pub fn write(&mut self, records: &[Record]) -> io::Result<()> {
        let mut wrote = false;
        for record in records {
            if self.last.get(&record.room).is_some_and(|&l| record.id <= l) {
                continue;
            }
            let file = match self.files.entry(record.room.clone()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    let path = self.dir.join(file_name(&record.room));
                    let file = gc_store::private::open(
                        &path,
                        gc_store::private::options().append(true).create(true),
                    )?;
                    e.insert(file)
                }
            };
            file.write_all(format!("{}\n", line(record)).as_bytes())?;
            self.last.insert(record.room.clone(), record.id);
            wrote = true;
        }
        if wrote {
            marks::save(&self.dir.join("last-ids"), &self.last)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::{Timestamp, Username};

    fn record(id: u64, room: &str, user: &str, body: &str) -> Record {
        Record {
            room: Room::new(room).unwrap(),
            id,
            timestamp: Timestamp::parse(&format!("{}", 1_700_000_000 + id)).unwrap(),
            username: Username::new(user).unwrap(),
            body: body.into(),
        }
    }

    #[test]
    fn each_record_once_one_line_each_in_its_conversations_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let base = tempfile::tempdir().unwrap();
        let dir = dir_for(&base.path().join("logs"), "chat.example:1/x", "Alice");
        assert!(dir.ends_with("logs/chat.example_1_x-alice"), "{dir:?}");
        let mut logs = ConvLogs::open(dir.clone()).unwrap();
        logs.write(&[
            record(1, "#general", "bob", "hi\nthere\u{1b}[31m"),
            record(2, "#dev", "alice", "in dev"),
            record(3, "@alice+bob", "bob", "psst"),
        ])
        .unwrap();
        // The backlog shown again after a restart: not written twice; what is new is.
        let mut logs = ConvLogs::open(dir.clone()).unwrap();
        logs.write(&[
            record(1, "#general", "bob", "hi\nthere\u{1b}[31m"),
            record(2, "#dev", "alice", "in dev"),
            record(4, "#general", "System", "carol joined #general"),
        ])
        .unwrap();
        let general = std::fs::read_to_string(dir.join("general.log")).unwrap();
        assert_eq!(
            general,
            "2023-11-14 22:13:21 <bob> hi⏎there␛[31m\n2023-11-14 22:13:24 -- carol joined #general\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("dev.log")).unwrap(),
            "2023-11-14 22:13:22 <alice> in dev\n"
        );
        assert!(dir.join("@alice+bob.log").exists());
        for file in ["general.log", "dev.log", "@alice+bob.log", "last-ids"] {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(file_name(&Room::general()), "general.log");
        assert_eq!(file_part("../x"), "___x");
        assert_eq!(file_part(""), "_");
    }
}

//! The client's kept outbox, `<cache>.outbox`: the messages a client had not had acknowledged
//! when it stopped, to send on its next run under the same client-msg-ids, so the server stores
//! each once whether or not an earlier attempt reached it.
//!
//! One line per message, oldest first: `{client-msg-id};{room};{text}`, the text escaped as in
//! the record format (`\\`, `\n`, `\r`). The file is replaced atomically as a whole, mode 0600,
//! and removed when nothing is kept.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use gc_protocol::types::{ClientMsgId, Room};

use crate::codec::{escape_into, unescape};
use crate::error::{Result, StoreError};
use crate::files;

/// The largest kept-outbox file read (a client keeps at most 10,000 messages of at most 64 KiB;
/// this is far above what a client writes and bounds what a damaged file can make it allocate).
const MAX_FILE_BYTES: u64 = 1 << 30;

/// A message kept for the next run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptMessage {
    /// Its idempotency key, as first sent.
    pub client_msg_id: ClientMsgId,
    /// Where it goes.
    pub room: Room,
    /// The text, exactly.
    pub text: String,
}

/// A line of a kept outbox that could not be read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnreadLine {
    /// 1-based line number.
    pub line_number: u64,
    /// What was wrong with it.
    pub reason: &'static str,
}

/// Where the kept outbox of the cache at `cache` lives: beside it, protected by its lock.
pub fn outbox_path(cache: &Path) -> PathBuf {
    files::with_suffix(cache, ".outbox")
}

/// Reads the kept outbox at `path` (none if the file does not exist). Lines that cannot be read
/// back are skipped and returned, so the caller can say so; the others are kept in order. A file
/// that others may read is tightened to 0600 with a warning.
pub fn load_outbox(path: &Path) -> Result<(Vec<KeptMessage>, Vec<UnreadLine>)> {
    let file = match fs::File::open(path) {
        Ok(f) => {
            crate::private::tighten(&f, path);
            f
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", path, e))?;
    let mut kept = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        match parse_line(line) {
            Ok(m) => kept.push(m),
            Err(reason) => bad.push(UnreadLine {
                line_number: i as u64 + 1,
                reason,
            }),
        }
    }
    Ok((kept, bad))
}

/// Replaces the kept outbox at `path` with `messages` (removes it when there are none).
pub fn save_outbox(path: &Path, messages: &[KeptMessage]) -> Result<()> {
    if messages.is_empty() {
        return match fs::remove_file(path) {
            Ok(()) => files::sync_dir(files::parent_dir(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", path, e)),
        };
    }
    let mut buf = Vec::new();
    for m in messages {
        buf.extend_from_slice(m.client_msg_id.as_str().as_bytes());
        buf.push(b';');
        buf.extend_from_slice(m.room.as_str().as_bytes());
        buf.push(b';');
        escape_into(m.text.as_bytes(), &mut buf);
        buf.push(b'\n');
    }
    files::atomic_rewrite(path, |w| w.write_all(&buf), |_| Ok(()))
}

fn parse_line(line: &[u8]) -> std::result::Result<KeptMessage, &'static str> {
    let line = line.strip_suffix(b"\n").ok_or("no line end")?;
    let mut parts = line.splitn(3, |&b| b == b';');
    let (Some(id), Some(room), Some(text)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not three fields");
    };
    let id = std::str::from_utf8(id).map_err(|_| "id not UTF-8")?;
    let client_msg_id = ClientMsgId::new(id).map_err(|_| "invalid client-msg-id")?;
    let room = std::str::from_utf8(room).map_err(|_| "room not UTF-8")?;
    let room = Room::new(room).map_err(|_| "invalid room")?;
    let text = unescape(text).map_err(|_| "bad escape in the text")?;
    let text = String::from_utf8(text).map_err(|_| "text not UTF-8")?;
    if text.is_empty() {
        return Err("empty text");
    }
    Ok(KeptMessage {
        client_msg_id,
        room,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(id: &str, room: &str, text: &str) -> KeptMessage {
        KeptMessage {
            client_msg_id: ClientMsgId::new(id).unwrap(),
            room: Room::new(room).unwrap(),
            text: text.into(),
        }
    }

    #[test]
    fn round_trip_keeps_order_text_and_mode_and_empty_removes() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = outbox_path(&dir.path().join("cdatabase.db"));
        assert_eq!(load_outbox(&path).unwrap(), (Vec::new(), Vec::new()));
        let messages = vec![
            kept("a1", "#general", "two\nlines; with \\ and \r"),
            kept("b2", "#dev", "second"),
            kept("c3", "@alice+bob", "third ✓"),
        ];
        save_outbox(&path, &messages).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_outbox(&path).unwrap(), (messages, Vec::new()));
        save_outbox(&path, &[]).unwrap();
        assert!(!path.exists());
        // Nothing to remove: fine too.
        save_outbox(&path, &[]).unwrap();
    }

    #[test]
    fn unreadable_lines_are_reported_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.outbox");
        fs::write(
            &path,
            "a1;#general;ok\nno fields\nb2;Dev;bad room\nc3;#dev;bad \\q escape\nd4;#dev;\ne5;#dev;last",
        )
        .unwrap();
        let (kept_now, bad) = load_outbox(&path).unwrap();
        assert_eq!(kept_now, vec![kept("a1", "#general", "ok")]);
        let lines: Vec<u64> = bad.iter().map(|b| b.line_number).collect();
        // The last line has no line end: a torn write is not trusted.
        assert_eq!(lines, [2, 3, 4, 5, 6]);
    }
}

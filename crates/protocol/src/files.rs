//! GC/5 file transfer, the parts both ends share besides the frames: the record that announces a
//! shared file, and what a file's name may become on either side (docs/files.md §5).
//!
//! A shared file is an ordinary record whose text has one exact shape, so a GC/1 client shows
//! something readable and a GC/5 one recognises it. Names are display text only: the server
//! stores a sanitised one in the record, and a client makes a file-system name of its own from
//! that before it creates anything.

use crate::frame::thousands;
use crate::limits::MAX_FILE_NAME_BYTES;
use crate::sanitize::is_unsafe;
use crate::types::ContentHash;

/// How a record announcing a file begins. A `Msg` whose body begins so is refused, so such a
/// record always comes from a completed, verified upload.
pub const NOTICE_PREFIX: &str = "[file] ";

/// Longest name a client gives a file it saves, in bytes (room for ` (99).part` and more under
/// the usual 255-byte limit of a file system).
pub const MAX_LOCAL_NAME_BYTES: usize = 200;

/// A record announcing a shared file: `[file] <name> (<size> bytes) sha256:<hash>`, the size
/// with thousands separators (`[file] build.log (1,482,213 bytes) sha256:3f5c…`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileNotice {
    /// The file's name as shown (already through [`display_name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The SHA-256 of its content.
    pub hash: ContentHash,
}

impl FileNotice {
    /// The record's text.
    pub fn text(&self) -> String {
        format!(
            "{NOTICE_PREFIX}{} ({} bytes) sha256:{}",
            self.name,
            thousands(self.size),
            self.hash
        )
    }

    /// The notice a record's text is, if it has exactly the shape [`FileNotice::text`] writes
    /// (with a name [`display_name`] leaves as it is); `None` for any other text.
    pub fn parse(body: &str) -> Option<Self> {
        let rest = body.strip_prefix(NOTICE_PREFIX)?;
        let (rest, hash) = rest.rsplit_once(" sha256:")?;
        let hash: ContentHash = hash.parse().ok()?;
        let rest = rest.strip_suffix(" bytes)")?;
        let (name, size) = rest.rsplit_once(" (")?;
        if size.is_empty()
            || size.starts_with(',')
            || !size.bytes().all(|b| b.is_ascii_digit() || b == b',')
        {
            return None;
        }
        let size: u64 = size.replace(',', "").parse().ok()?;
        let notice = Self {
            name: name.to_owned(),
            size,
            hash,
        };
        // One spelling per notice: separators where `thousands` puts them, no leading zeros,
        // a name as the server makes them.
        (display_name(name) == name && notice.text() == body).then_some(notice)
    }
}

/// A file name as the server puts it in a record: characters that are unsafe on a terminal
/// ([`is_unsafe`]: controls, bidirectional overrides, invisible format characters) become `?`,
/// path separators `_`; spaces at either end are dropped; cut to [`MAX_FILE_NAME_BYTES`] at a
/// character boundary; `file` when nothing is left. Display text only: never a path.
pub fn display_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_FILE_NAME_BYTES));
    for c in raw.trim_matches(' ').chars() {
        let c = match c {
            '/' | '\\' => '_',
            c if is_unsafe(c) => '?',
            c => c,
        };
        if out.len() + c.len_utf8() > MAX_FILE_NAME_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim_end_matches(' ').len();
    out.truncate(trimmed);
    if out.is_empty() {
        out.push_str("file");
    }
    out
}

/// A name a client may create in its download directory, from a record's name: what
/// [`display_name`] makes, without leading dots (no hidden files, never `.` or `..`), without
/// `:` (a drive or stream on other systems), cut to [`MAX_LOCAL_NAME_BYTES`] keeping the
/// extension where it fits; `download` when nothing is left. Never contains a path separator.
pub fn local_file_name(name: &str) -> String {
    let shown = display_name(name).replace(':', "_");
    let shown = shown.trim_start_matches('.');
    if shown.trim().is_empty() {
        return "download".to_owned();
    }
    if shown.len() <= MAX_LOCAL_NAME_BYTES {
        return shown.to_owned();
    }
    // Keep a short extension (`.tar.gz` would lose `.tar`: fine for a name this long).
    let ext = shown
        .rfind('.')
        .map(|i| &shown[i..])
        .filter(|e| e.len() <= 16)
        .unwrap_or("");
    let mut stem_end = MAX_LOCAL_NAME_BYTES - ext.len();
    while !shown.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{ext}", &shown[..stem_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "3f5c0e1a9b7d2c4f6e8a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445e1";

    fn notice(name: &str, size: u64) -> FileNotice {
        FileNotice {
            name: name.to_owned(),
            size,
            hash: HASH.parse().unwrap(),
        }
    }

    #[test]
    fn the_record_text_is_exact_and_reads_back() {
        let n = notice("build.log", 1_482_213);
        let text = n.text();
        assert_eq!(
            text,
            format!("[file] build.log (1,482,213 bytes) sha256:{HASH}")
        );
        assert_eq!(FileNotice::parse(&text), Some(n));
        for (size, shown) in [(0, "0"), (999, "999"), (1000, "1,000")] {
            let n = notice("a b (1) sha256:x.txt", size);
            assert!(n.text().contains(&format!("({shown} bytes)")));
            assert_eq!(
                FileNotice::parse(&n.text()),
                Some(n),
                "a name with the separators"
            );
        }
    }

    #[test]
    fn any_other_text_is_not_a_notice() {
        let good = format!("[file] a.txt (1,000 bytes) sha256:{HASH}");
        assert!(FileNotice::parse(&good).is_some());
        for bad in [
            format!("[file] a.txt (1000 bytes) sha256:{HASH}"),
            format!("[file] a.txt (01,000 bytes) sha256:{HASH}"),
            format!("[file] a.txt (,100 bytes) sha256:{HASH}"),
            format!("[file] a.txt ( bytes) sha256:{HASH}"),
            format!("[file] a.txt (1,000 bytes) sha256:{}", HASH.to_uppercase()),
            format!("[file] a.txt (1,000 bytes) sha256:{HASH} "),
            format!("[file]  (1,000 bytes) sha256:{HASH}"),
            format!("[file] a/b.txt (1,000 bytes) sha256:{HASH}"),
            format!("[file] a\u{202e}b.txt (1,000 bytes) sha256:{HASH}"),
            format!("[File] a.txt (1,000 bytes) sha256:{HASH}"),
            format!("[file] a.txt (99,999,999,999,999,999,999 bytes) sha256:{HASH}"),
            "[file] a.txt (1 bytes) sha256:00".to_owned(),
            "hello".to_owned(),
            String::new(),
        ] {
            assert_eq!(FileNotice::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn display_names_are_text_never_paths() {
        for (raw, shown) in [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", ".._.._etc_passwd"),
            ("/abs/path", "_abs_path"),
            ("C:\\win\\x", "C:_win_x"),
            ("a\u{0}b", "a?b"),
            ("a\nb\x1b[31m", "a?b?[31m"),
            ("evil\u{202e}txt.exe", "evil?txt.exe"),
            ("  spaced  ", "spaced"),
            ("", "file"),
            ("   ", "file"),
        ] {
            assert_eq!(display_name(raw), shown, "{raw:?}");
        }
        let long = "é".repeat(300);
        let shown = display_name(&long);
        assert!(shown.len() <= MAX_FILE_NAME_BYTES && shown.chars().all(|c| c == 'é'));
    }

    #[test]
    fn local_names_are_safe_to_create() {
        for (name, local) in [
            ("report.pdf", "report.pdf"),
            (".bashrc", "bashrc"),
            ("..", "download"),
            ("...", "download"),
            (".", "download"),
            ("a:b", "a_b"),
            ("../x", "_x"),
        ] {
            assert_eq!(local_file_name(name), local, "{name:?}");
        }
        let long = format!("{}.tar.gz", "x".repeat(240));
        let local = local_file_name(&long);
        assert!(local.len() <= MAX_LOCAL_NAME_BYTES, "{}", local.len());
        assert!(local.ends_with(".gz"));
        let wide = format!("{}.txt", "日".repeat(80));
        let local = local_file_name(&wide);
        assert!(local.len() <= MAX_LOCAL_NAME_BYTES && local.ends_with(".txt"));
    }

    #[test]
    fn content_hashes_have_one_spelling() {
        let h: ContentHash = HASH.parse().unwrap();
        assert_eq!(h.to_string(), HASH);
        assert_eq!(
            ContentHash::of(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for bad in [
            &HASH[1..],
            &HASH.to_uppercase(),
            &format!("{HASH}0"),
            "",
            "g".repeat(64).as_str(),
        ] {
            assert!(bad.parse::<ContentHash>().is_err(), "{bad:?}");
        }
    }
}

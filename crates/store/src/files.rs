//! File plumbing shared by the stores: a chunked line reader, moving bad lines aside into a
//! `.corrupt` file, atomic rewrites, and directory fsync. Every file made here is 0600
//! ([`crate::private`]).

use std::fs::{self, File};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use gc_protocol::types::Timestamp;

use crate::codec::{MAX_LINE_BYTES, find_byte};
use crate::error::{LineError, Result, StoreError};
use crate::private;

/// `path` with `suffix` appended to its file name (`database.db` → `database.db.corrupt`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Fsyncs a directory, so a rename or a file creation in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync the directory", dir, e))
}

/// Opens `path` for reading and writing, creating it (0600) if absent; it and the lines moved
/// aside from it are tightened if others may read them.
pub(crate) fn open_rw(path: &Path) -> Result<File> {
    let file = private::open(
        path,
        private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false),
    )
    .map_err(|e| StoreError::io("open", path, e))?;
    tighten_corrupt(path);
    Ok(file)
}

/// Tightens `<path>.corrupt`, if it exists and others may read it: it holds lines of `path`.
pub(crate) fn tighten_corrupt(path: &Path) {
    private::tighten_path(&with_suffix(path, ".corrupt"));
}

/// The length of an open file.
pub(crate) fn file_len(file: &File, path: &Path) -> Result<u64> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StoreError::io("read the metadata of", path, e))
}

/// One line handed out by [`LineReader`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Line<'a> {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// Bytes of the line in the file, LF included when present.
    pub len: u64,
    /// The line without its LF; empty when `too_long`.
    pub bytes: &'a [u8],
    /// Whether the line ends with an LF (only the file's last line can lack one).
    pub has_lf: bool,
    /// The line is longer than [`MAX_LINE_BYTES`]; its bytes were skipped, not kept.
    pub too_long: bool,
}

impl Line<'_> {
    /// The structural fault of this line, if any: too long, or torn (no LF).
    pub fn framing_error(&self) -> Option<LineError> {
        if self.too_long {
            Some(LineError::TooLong)
        } else if !self.has_lf {
            Some(LineError::Torn)
        } else {
            None
        }
    }
}

/// Reads a file's lines in big chunks without allocating per line. Memory stays bounded by
/// [`MAX_LINE_BYTES`] whatever the file holds: longer lines are skipped and flagged.
pub(crate) struct LineReader<'f> {
    file: &'f File,
    path: &'f Path,
    buf: Vec<u8>,
    /// Valid data is `buf[start..end]`.
    start: usize,
    end: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// File offset up to which the file has been read.
    read_pos: u64,
    eof: bool,
    line_number: u64,
}

impl<'f> LineReader<'f> {
    /// Reads `file` from its start.
    pub fn new(file: &'f File, path: &'f Path) -> Self {
        Self {
            file,
            path,
            buf: vec![0; MAX_LINE_BYTES],
            start: 0,
            end: 0,
            buf_offset: 0,
            read_pos: 0,
            eof: false,
            line_number: 0,
        }
    }

    /// Reads more data after `end`; sets `eof` at the end of the file.
    fn fill(&mut self) -> Result<()> {
        loop {
            match self.file.read_at(&mut self.buf[self.end..], self.read_pos) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    self.read_pos += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(StoreError::io("read", self.path, e)),
            }
        }
    }

    /// The next line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        loop {
            if let Some(pos) = find_byte(&self.buf[self.start..self.end], b'\n') {
                let (s, e) = (self.start, self.start + pos);
                self.start = e + 1;
                self.line_number += 1;
                return Ok(Some(Line {
                    number: self.line_number,
                    offset: self.buf_offset + s as u64,
                    len: (e - s + 1) as u64,
                    bytes: &self.buf[s..e],
                    has_lf: true,
                    too_long: false,
                }));
            }
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let (s, e) = (self.start, self.end);
                self.start = e;
                self.line_number += 1;
                return Ok(Some(Line {
                    number: self.line_number,
                    offset: self.buf_offset + s as u64,
                    len: (e - s) as u64,
                    bytes: &self.buf[s..e],
                    has_lf: false,
                    too_long: false,
                }));
            }
            // Keep the unfinished line, and make room after it.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.buf_offset += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                return self.skip_long_line().map(Some);
            }
            self.fill()?;
        }
    }

    /// The buffer is full without an LF: skip to the next LF (or the end of the file).
    fn skip_long_line(&mut self) -> Result<Line<'_>> {
        let line_start = self.buf_offset;
        self.line_number += 1;
        loop {
            self.buf_offset += self.end as u64;
            self.start = 0;
            self.end = 0;
            self.fill()?;
            if let Some(pos) = find_byte(&self.buf[..self.end], b'\n') {
                self.start = pos + 1;
                return Ok(Line {
                    number: self.line_number,
                    offset: line_start,
                    len: self.buf_offset + pos as u64 + 1 - line_start,
                    bytes: &[],
                    has_lf: true,
                    too_long: true,
                });
            }
            if self.eof {
                return Ok(Line {
                    number: self.line_number,
                    offset: line_start,
                    len: self.buf_offset + self.end as u64 - line_start,
                    bytes: &[],
                    has_lf: false,
                    too_long: true,
                });
            }
        }
    }
}

/// An invalid line: where it is in its file, and the rule it broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultyLine {
    /// 1-based line number in the file it came from.
    pub line_number: u64,
    /// Byte offset in the file it came from.
    pub offset: u64,
    /// Its length in bytes (LF included when it had one).
    pub len: u64,
    /// Which rule it broke.
    pub reason: LineError,
}

/// Appends copies of `lines` of `source` (at `source_path`) to `<source_path>.corrupt`, each after
/// a `#` header line naming its line number and the reason, then fsyncs the `.corrupt` file. The
/// original bytes are kept exactly; an LF is added after a line that had none (its header says so).
pub(crate) fn move_aside(
    source: &File,
    source_path: &Path,
    lines: &[FaultyLine],
) -> Result<PathBuf> {
    let corrupt_path = with_suffix(source_path, ".corrupt");
    if lines.is_empty() {
        return Ok(corrupt_path);
    }
    let existed = corrupt_path.exists();
    let mut out = private::open(&corrupt_path, private::options().append(true).create(true))
        .map_err(|e| StoreError::io("open", &corrupt_path, e))?;
    let name = source_path.file_name().map_or_else(
        || source_path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let now = Timestamp::now();
    let mut buf = Vec::new();
    for line in lines {
        buf.clear();
        let note = if line.reason == LineError::Torn {
            " (an LF was added here)"
        } else {
            ""
        };
        let _ = writeln!(
            buf,
            "# gc-store {now}: line {} of {name} ({} bytes) moved aside: {}{note}",
            line.line_number, line.len, line.reason
        );
        let header_len = buf.len();
        let len = usize::try_from(line.len).unwrap_or(usize::MAX);
        buf.resize(header_len + len, 0);
        source
            .read_exact_at(&mut buf[header_len..], line.offset)
            .map_err(|e| StoreError::io("read", source_path, e))?;
        if buf.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
        out.write_all(&buf)
            .map_err(|e| StoreError::io("write to", &corrupt_path, e))?;
    }
    out.sync_all()
        .map_err(|e| StoreError::io("fsync", &corrupt_path, e))?;
    if !existed {
        sync_dir(parent_dir(&corrupt_path))?;
    }
    Ok(corrupt_path)
}

/// Writes a new version of `path` atomically: `fill` writes into `<path>.tmp` (mode 0600, so the
/// new `path` is too), which is fsynced, optionally handed to `before_rename` (e.g. to lock it),
/// renamed over `path`, and the directory fsynced. On error the temporary file is removed and
/// `path` is untouched.
pub(crate) fn atomic_rewrite<T>(
    path: &Path,
    fill: impl FnOnce(&mut io::BufWriter<&File>) -> io::Result<()>,
    before_rename: impl FnOnce(File) -> Result<T>,
) -> Result<T> {
    let tmp = with_suffix(path, ".tmp");
    let result = (|| {
        let file = private::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("create", &tmp, e))?;
        // A temporary file left by a crash keeps its mode through the truncation: set it.
        file.set_permissions(fs::Permissions::from_mode(private::FILE_MODE))
            .map_err(|e| StoreError::io("set the mode of", &tmp, e))?;
        let mut w = io::BufWriter::with_capacity(1 << 20, &file);
        fill(&mut w)
            .and_then(|()| w.flush())
            .map_err(|e| StoreError::io("write to", &tmp, e))?;
        drop(w);
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &tmp, e))?;
        let kept = before_rename(file)?;
        fs::rename(&tmp, path)
            .map_err(|e| StoreError::io("rename the temporary file over", path, e))?;
        sync_dir(parent_dir(path))?;
        Ok(kept)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Copies `ranges` (offset, length) of `source` into `out`, in order.
pub(crate) fn copy_ranges(
    source: &File,
    ranges: &[(u64, u64)],
    out: &mut impl io::Write,
) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for &(mut offset, len) in ranges {
        let end = offset + len;
        while offset < end {
            let n = usize::try_from(end - offset)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            source.read_exact_at(&mut buf[..n], offset)?;
            out.write_all(&buf[..n])?;
            offset += n as u64;
        }
    }
    Ok(())
}

/// Appends `(offset, len)` to `ranges`, merging it with the last range when they touch.
pub(crate) fn push_range(ranges: &mut Vec<(u64, u64)>, offset: u64, len: u64) {
    if let Some(last) = ranges.last_mut()
        && last.0 + last.1 == offset
    {
        last.1 += len;
        return;
    }
    ranges.push((offset, len));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(content: &[u8]) -> Vec<(u64, u64, u64, Vec<u8>, bool, bool)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, content).unwrap();
        let file = File::open(&path).unwrap();
        let mut r = LineReader::new(&file, &path);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push((
                l.number,
                l.offset,
                l.len,
                l.bytes.to_vec(),
                l.has_lf,
                l.too_long,
            ));
        }
        out
    }

    #[test]
    fn splits_lines_with_offsets() {
        assert!(lines_of(b"").is_empty());
        assert_eq!(
            lines_of(b"a\n\nbc\nd"),
            vec![
                (1, 0, 2, b"a".to_vec(), true, false),
                (2, 2, 1, b"".to_vec(), true, false),
                (3, 3, 3, b"bc".to_vec(), true, false),
                (4, 6, 1, b"d".to_vec(), false, false),
            ]
        );
    }

    #[test]
    fn lines_across_chunks_and_too_long() {
        let mut content = Vec::new();
        let mut expect = Vec::new();
        // Enough lines to cross the 1 MiB buffer several times at odd offsets.
        for i in 0..100_000u64 {
            let line = format!("{i};{}", "x".repeat((i % 37) as usize));
            expect.push(line.clone().into_bytes());
            content.extend_from_slice(line.as_bytes());
            content.push(b'\n');
        }
        let long_at = content.len() as u64;
        content.extend(std::iter::repeat_n(b'y', MAX_LINE_BYTES * 2 + 5));
        content.extend_from_slice(b"\nlast\nzz".as_slice());
        let got = lines_of(&content);
        assert_eq!(got.len(), expect.len() + 3);
        for (g, e) in got.iter().zip(&expect) {
            assert_eq!(&g.3, e);
        }
        let long = &got[expect.len()];
        assert_eq!(
            (long.1, long.2, long.4, long.5),
            (long_at, MAX_LINE_BYTES as u64 * 2 + 6, true, true)
        );
        assert_eq!(got[expect.len() + 1].3, b"last");
        assert_eq!(got[expect.len() + 2].3, b"zz");
        assert!(!got[expect.len() + 2].4);
    }

    #[test]
    fn too_long_final_line_without_lf() {
        let content = vec![b'q'; MAX_LINE_BYTES + 10];
        let got = lines_of(&content);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].2, got[0].4, got[0].5),
            (MAX_LINE_BYTES as u64 + 10, false, true)
        );
    }

    #[test]
    fn ranges_merge() {
        let mut r = Vec::new();
        push_range(&mut r, 0, 5);
        push_range(&mut r, 5, 3);
        push_range(&mut r, 10, 1);
        assert_eq!(r, vec![(0, 8), (10, 1)]);
    }
}

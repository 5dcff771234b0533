//! `usernames.db`: one account (a SCRAM-SHA-256 verifier) per line.
//!
//! `{username};{salt:b64};{iterations};{stored-key:b64};{server-key:b64};{created-timestamp}`,
//! base64 in the standard alphabet with padding. A new account is appended (one write, one
//! fsync); a removal or a new password rewrites the whole file atomically. A crash in the middle
//! of an append leaves a torn last line, which the lock holder moves aside, as `database.db`'s.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gc_protocol::types::{Timestamp, Username, parse_u32};
use parking_lot::{Mutex, RwLock};

use crate::error::{LineError, Result, StoreError};
use crate::files::{self, FaultyLine, LineReader};

/// Name of the accounts file inside a data dir.
pub const ACCOUNTS_FILE: &str = "usernames.db";

/// One account: a username and its SCRAM-SHA-256 verifier. The password itself is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// The name as registered (unique without regard to case).
    pub username: Username,
    /// The PBKDF2 salt.
    pub salt: Vec<u8>,
    /// The PBKDF2 iteration count.
    pub iterations: u32,
    /// `H(ClientKey)`.
    pub stored_key: Vec<u8>,
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: Vec<u8>,
    /// When the account was created.
    pub created: Timestamp,
}

impl fmt::Debug for Account {
    // The keys are secrets (the server key lets anyone impersonate the server): keep them out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("username", &self.username)
            .field("iterations", &self.iterations)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let _ = writeln!(
            out,
            "{};{};{};{};{};{}",
            self.username,
            B64.encode(&self.salt),
            self.iterations,
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key),
            self.created
        );
    }

    pub(crate) fn parse(line: &[u8]) -> Result<Self, LineError> {
        let text = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
        let fields: Vec<&str> = text.split(';').collect();
        let [user, salt, iterations, stored, server, created] = fields[..] else {
            return Err(LineError::Fields);
        };
        let b64 = |s: &str, field| B64.decode(s).map_err(|_| LineError::Base64 { field });
        Ok(Self {
            username: Username::new(user).map_err(|_| LineError::Username)?,
            salt: b64(salt, "salt")?,
            iterations: parse_u32(iterations)
                .ok()
                .filter(|&n| n > 0)
                .ok_or(LineError::Iterations)?,
            stored_key: b64(stored, "stored key")?,
            server_key: b64(server, "server key")?,
            created: Timestamp::parse(created).map_err(|_| LineError::Timestamp)?,
        })
    }
}

/// The accounts in memory, with a case-folded name index.
#[derive(Debug, Default)]
struct Table {
    accounts: Vec<Account>,
    by_key: HashMap<String, usize>,
}

impl Table {
    fn new(accounts: Vec<Account>) -> Self {
        let by_key = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.username.key(), i))
            .collect();
        Self { accounts, by_key }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.by_key.get(&name.to_ascii_lowercase()).copied()
    }

    fn push(&mut self, account: Account) {
        self.by_key
            .insert(account.username.key(), self.accounts.len());
        self.accounts.push(account);
    }
}

/// What the writer knows of the file on disk beyond the accounts in memory.
#[derive(Debug, Default)]
struct OnDisk {
    /// An invalid last line without its LF (a crash in the middle of an append), left out of
    /// memory and still in the file: moved aside before anything else is written.
    torn: Option<FaultyLine>,
    /// The last line is valid but has no LF (a hand-edited file): an append writes one first.
    missing_lf: bool,
    /// A failed append may have left part of a line that could not be cut off again: the next
    /// change rewrites the whole file from memory instead of appending.
    unsure: bool,
}

/// The accounts file, loaded in memory. `Send + Sync`; readers never wait for a disk write.
///
/// A new account is appended to the file (one write and one fsync); a removal or a changed
/// verifier rewrites the whole file atomically. So the file holds exactly one line per account,
/// in any version, and a registration costs the same with 10 accounts or 100,000.
///
/// It takes no lock on the data dir itself: whoever changes accounts holds the
/// [`crate::DataDirLock`] (a server through its message store, admin commands by taking it).
/// Opening reads only, so a reader without the lock never changes the file.
#[derive(Debug)]
pub struct Accounts {
    path: PathBuf,
    /// Serialises changes, and knows the state of the file.
    writing: Mutex<OnDisk>,
    /// Taken for writing only to publish a change already on disk.
    table: RwLock<Table>,
}

impl Accounts {
    /// Loads `path` (usually `<data-dir>/usernames.db`); a missing file is no accounts (it is
    /// created by the first change). Every line is validated: a bad line is
    /// [`StoreError::BadLine`] with its number, two lines with one name (ignoring case)
    /// [`StoreError::DuplicateAccount`]. A valid last line without its LF is accepted. An
    /// invalid last line without its LF is a torn append (a crash while writing it): it is left
    /// out, and moved aside into `usernames.db.corrupt` and cut off by [`Accounts::recover`]
    /// or the next change (both for the holder of the data-dir lock only). A file that others
    /// may read is tightened to 0600 with a warning; the first change writes one.
    pub fn open(path: &Path) -> Result<Self> {
        let (accounts, on_disk) = match File::open(path) {
            Ok(file) => {
                // The keys let whoever reads them pose as the server: the owner's alone.
                crate::private::tighten(&file, path);
                read_accounts(&file, path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), OnDisk::default()),
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        Ok(Self {
            path: path.to_owned(),
            writing: Mutex::new(on_disk),
            table: RwLock::new(Table::new(accounts)),
        })
    }

    /// Moves a torn last line found at open (a crash in the middle of an append) aside into
    /// `usernames.db.corrupt`, cuts it off the file, fsyncs, and logs it; returns it, or `None`
    /// if there was none. Only for the holder of the data-dir lock (a server at start, an admin
    /// command that changes accounts): a reader without it could take a line being written for
    /// a torn one.
    pub fn recover(&self) -> Result<Option<FaultyLine>> {
        let mut on_disk = self.writing.lock();
        self.cut_torn(&mut on_disk)
    }

    /// The accounts file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The account with this name, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<Account> {
        let t = self.table.read();
        t.position(name).map(|i| t.accounts[i].clone())
    }

    /// Every account, in file order.
    pub fn list(&self) -> Vec<Account> {
        self.table.read().accounts.clone()
    }

    /// The number of accounts.
    pub fn len(&self) -> usize {
        self.table.read().accounts.len()
    }

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an account; [`StoreError::Exists`] if the name (ignoring case) is taken. Its line is
    /// appended to the file and fsynced before anyone sees it; if that fails, neither the file
    /// nor memory changes.
    pub fn add(&self, account: Account) -> Result<()> {
        let mut on_disk = self.writing.lock();
        {
            // Only changes take `writing`: the table cannot change until it is let go.
            let table = self.table.read();
            if let Some(i) = table.position(account.username.as_str()) {
                return Err(StoreError::Exists {
                    username: table.accounts[i].username.to_string(),
                });
            }
        }
        self.cut_torn(&mut on_disk)?;
        if on_disk.unsure {
            // The file may hold part of a line memory does not: write it whole.
            let mut next = self.table.read().accounts.clone();
            next.push(account);
            return self.rewrite(&mut on_disk, next);
        }
        self.append(&mut on_disk, &account)?;
        self.table.write().push(account);
        Ok(())
    }

    /// Removes the account with this name (ignoring case) and returns it;
    /// [`StoreError::UnknownAccount`] if there is none. Rewrites the file atomically.
    pub fn remove(&self, name: &str) -> Result<Account> {
        let mut on_disk = self.writing.lock();
        let unknown = || StoreError::UnknownAccount {
            username: name.to_owned(),
        };
        let (i, mut next) = {
            let table = self.table.read();
            let i = table.position(name).ok_or_else(unknown)?;
            (i, table.accounts.clone())
        };
        let removed = next.remove(i);
        self.cut_torn(&mut on_disk)?;
        self.rewrite(&mut on_disk, next)?;
        Ok(removed)
    }

    /// Replaces the account with the same name (ignoring case), e.g. after a password change;
    /// [`StoreError::UnknownAccount`] if there is none. Every field is replaced as given.
    /// Rewrites the file atomically.
    pub fn update(&self, account: Account) -> Result<()> {
        let mut on_disk = self.writing.lock();
        let next = {
            let table = self.table.read();
            let i = table.position(account.username.as_str()).ok_or_else(|| {
                StoreError::UnknownAccount {
                    username: account.username.to_string(),
                }
            })?;
            let mut next = table.accounts.clone();
            next[i] = account;
            next
        };
        self.cut_torn(&mut on_disk)?;
        self.rewrite(&mut on_disk, next)
    }

    /// Appends `account`'s line with one write and one fsync. A failed write or fsync is undone
    /// (the file cut back to its length before); if even that fails, the file is marked for a
    /// rewrite at the next change.
    fn append(&self, on_disk: &mut OnDisk, account: &Account) -> Result<()> {
        let mut line = Vec::with_capacity(192);
        if on_disk.missing_lf {
            line.push(b'\n');
        }
        account.encode(&mut line);
        let dir = files::parent_dir(&self.path);
        crate::private::create_dirs(dir)
            .map_err(|e| StoreError::io("create the directory", dir, e))?;
        let created = !self.path.exists();
        let mut file = crate::private::open(
            &self.path,
            crate::private::options().append(true).create(true),
        )
        .map_err(|e| StoreError::io("open", &self.path, e))?;
        let before = files::file_len(&file, &self.path)?;
        if let Err(e) = file.write_all(&line).and_then(|()| file.sync_data()) {
            // A part of a line left at the end would glue itself to the next one.
            if file
                .set_len(before)
                .and_then(|()| file.sync_data())
                .is_err()
            {
                on_disk.unsure = true;
            }
            return Err(StoreError::io("append to", &self.path, e));
        }
        if created && let Err(e) = files::sync_dir(dir) {
            // The line is in the file, but the file may not survive a crash: memory does not
            // take the account, and the next change writes the file whole from memory.
            on_disk.unsure = true;
            return Err(e);
        }
        on_disk.missing_lf = false;
        Ok(())
    }

    /// Writes `next` as the whole file atomically (`.tmp`, fsync, rename, directory fsync), then
    /// publishes it. If anything fails, neither the file nor memory changes.
    fn rewrite(&self, on_disk: &mut OnDisk, next: Vec<Account>) -> Result<()> {
        let mut buf = Vec::with_capacity(next.len() * 160);
        for a in &next {
            a.encode(&mut buf);
        }
        let dir = files::parent_dir(&self.path);
        crate::private::create_dirs(dir)
            .map_err(|e| StoreError::io("create the directory", dir, e))?;
        files::atomic_rewrite(&self.path, |w| w.write_all(&buf), |_| Ok(()))?;
        on_disk.missing_lf = false;
        on_disk.unsure = false;
        *self.table.write() = Table::new(next);
        Ok(())
    }

    /// Moves the torn last line found at open, if any, aside and cuts it off (see
    /// [`Accounts::recover`]).
    fn cut_torn(&self, on_disk: &mut OnDisk) -> Result<Option<FaultyLine>> {
        let Some(torn) = on_disk.torn else {
            return Ok(None);
        };
        let file =
            crate::private::open(&self.path, crate::private::options().read(true).write(true))
                .map_err(|e| StoreError::io("open", &self.path, e))?;
        if files::file_len(&file, &self.path)? != torn.offset + torn.len {
            // Not the file read at open (changed by hand since?): leave its bytes alone, and
            // write the file whole from memory at the next change.
            tracing::warn!(
                path = %self.path.display(),
                "the accounts file changed since it was read; it will be rewritten from the \
                 accounts read"
            );
            on_disk.torn = None;
            on_disk.unsure = true;
            return Ok(None);
        }
        let corrupt = files::move_aside(&file, &self.path, &[torn])?;
        file.set_len(torn.offset)
            .map_err(|e| StoreError::io("truncate", &self.path, e))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync", &self.path, e))?;
        tracing::warn!(
            path = %self.path.display(),
            line = torn.line_number,
            bytes = torn.len,
            reason = %torn.reason,
            "the last line of the accounts file was torn (an interrupted write); moved it aside \
             into {}",
            corrupt.display()
        );
        on_disk.torn = None;
        Ok(Some(torn))
    }
}

/// Every line of an accounts file, judged: the good lines (as read, without LF) and the bad
/// ones (invalid, or a name an earlier line holds), for `db check` and `db repair`.
pub(crate) struct AccountsScan {
    /// Lines read.
    pub lines: u64,
    /// The valid lines, in order.
    pub good: Vec<Vec<u8>>,
    /// The others.
    pub bad: Vec<crate::files::FaultyLine>,
}

/// Reads `path` (a missing file is empty) and judges every line, as [`Accounts::open`] would.
pub(crate) fn scan_accounts(path: &Path) -> Result<Option<(File, AccountsScan)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let mut scan = AccountsScan {
        lines: 0,
        good: Vec::new(),
        bad: Vec::new(),
    };
    let mut lines_of: HashMap<String, u64> = HashMap::new();
    let mut reader = LineReader::new(&file, path);
    while let Some(line) = reader.next_line()? {
        scan.lines += 1;
        let verdict = if line.too_long {
            Err(LineError::TooLong)
        } else {
            Account::parse(line.bytes).and_then(|a| match lines_of.get(&a.username.key()) {
                Some(&first_line) => Err(LineError::Duplicate { first_line }),
                None => {
                    lines_of.insert(a.username.key(), line.number);
                    Ok(())
                }
            })
        };
        match verdict {
            Ok(()) => scan.good.push(line.bytes.to_vec()),
            Err(reason) => scan.bad.push(crate::files::FaultyLine {
                line_number: line.number,
                offset: line.offset,
                len: line.len,
                reason,
            }),
        }
    }
    Ok(Some((file, scan)))
}

/// Reads every account of `file`, and what the writer must know of it. An invalid line is
/// [`StoreError::BadLine`] unless it is the last one and has no LF: then it is the end of an
/// interrupted append, left out and reported in [`OnDisk::torn`].
fn read_accounts(file: &File, path: &Path) -> Result<(Vec<Account>, OnDisk)> {
    let mut accounts: Vec<Account> = Vec::new();
    let mut on_disk = OnDisk::default();
    let mut lines_of: HashMap<String, u64> = HashMap::new();
    let mut reader = LineReader::new(file, path);
    while let Some(line) = reader.next_line()? {
        let bad = |reason| StoreError::BadLine {
            path: path.to_owned(),
            line_number: line.number,
            reason,
        };
        let parsed = if line.too_long {
            Err(LineError::TooLong)
        } else {
            Account::parse(line.bytes)
        };
        let account = match parsed {
            Ok(account) => account,
            // Only the file's last line can lack its LF.
            Err(reason) if !line.has_lf => {
                on_disk.torn = Some(FaultyLine {
                    line_number: line.number,
                    offset: line.offset,
                    len: line.len,
                    reason,
                });
                break;
            }
            Err(reason) => return Err(bad(reason)),
        };
        if let Some(&first_line) = lines_of.get(&account.username.key()) {
            return Err(StoreError::DuplicateAccount {
                path: path.to_owned(),
                first_line,
                line_number: line.number,
                username: account.username.to_string(),
            });
        }
        on_disk.missing_lf = !line.has_lf;
        lines_of.insert(account.username.key(), line.number);
        accounts.push(account);
    }
    Ok((accounts, on_disk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account {
            username: Username::new(name).unwrap(),
            salt: b"salt-bytes".to_vec(),
            iterations: 4096,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
            created: Timestamp::parse("1640995200.5").unwrap(),
        }
    }

    #[test]
    fn line_format_is_exact() {
        let mut out = Vec::new();
        account("Alice").encode(&mut out);
        let line = "Alice;c2FsdC1ieXRlcw==;4096;AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=;\
                    AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=;1640995200.5\n";
        assert_eq!(String::from_utf8(out).unwrap(), line);
        assert_eq!(
            Account::parse(line.trim_end().as_bytes()),
            Ok(account("Alice"))
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        let ok = "a;c2FsdA==;1;AQ==;Ag==;1";
        assert!(Account::parse(ok.as_bytes()).is_ok());
        let cases = [
            ("a;c2FsdA==;1;AQ==;Ag==", LineError::Fields),
            ("a;c2FsdA==;1;AQ==;Ag==;1;x", LineError::Fields),
            ("a b;c2FsdA==;1;AQ==;Ag==;1", LineError::Username),
            (
                "a;c2FsdA=;1;AQ==;Ag==;1",
                LineError::Base64 { field: "salt" },
            ),
            ("a;c2FsdA==;0;AQ==;Ag==;1", LineError::Iterations),
            ("a;c2FsdA==;01;AQ==;Ag==;1", LineError::Iterations),
            ("a;c2FsdA==;4294967296;AQ==;Ag==;1", LineError::Iterations),
            (
                "a;c2FsdA==;1;A;Ag==;1",
                LineError::Base64 {
                    field: "stored key",
                },
            ),
            (
                "a;c2FsdA==;1;AQ==;Ag;1",
                LineError::Base64 {
                    field: "server key",
                },
            ),
            ("a;c2FsdA==;1;AQ==;Ag==;x", LineError::Timestamp),
        ];
        for (line, err) in cases {
            assert_eq!(Account::parse(line.as_bytes()), Err(err), "{line}");
        }
        assert_eq!(Account::parse(b"\xff"), Err(LineError::Utf8));
    }

    #[test]
    fn debug_hides_keys() {
        let text = format!("{:?}", account("bob"));
        assert!(text.contains("bob") && !text.contains("[1, 1"), "{text}");
    }
}

//! `usernames.db`: one account (a SCRAM-SHA-256 verifier) per line.
//!
//! `{username};{salt:b64};{iterations};{stored-key:b64};{server-key:b64};{created-timestamp}`,
//! base64 in the standard alphabet with padding. Every change rewrites the whole file atomically.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gc_protocol::types::{Timestamp, Username, parse_u32};
use parking_lot::{Mutex, RwLock};

use crate::error::{LineError, Result, StoreError};
use crate::files::{self, LineReader};

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
}

/// The accounts file, loaded in memory. `Send + Sync`; readers never wait for a disk write.
///
/// It takes no lock on the data dir itself: admin commands that change accounts while no server
/// runs should hold a [`crate::DataDirLock`] first.
#[derive(Debug)]
pub struct Accounts {
    path: PathBuf,
    /// Serialises changes (each rewrites the whole file).
    writing: Mutex<()>,
    table: RwLock<Arc<Table>>,
}

impl Accounts {
    /// Loads `path` (usually `<data-dir>/usernames.db`); a missing file is no accounts (it is
    /// created by the first change). Every line is validated: a bad line is
    /// [`StoreError::BadLine`] with its number, two lines with one name (ignoring case)
    /// [`StoreError::DuplicateAccount`]. A missing LF after the last line is accepted. A file
    /// that others may read is tightened to 0600 with a warning; the first change writes one.
    pub fn open(path: &Path) -> Result<Self> {
        let accounts = match File::open(path) {
            Ok(file) => {
                // The keys let whoever reads them pose as the server: the owner's alone.
                crate::private::tighten(&file, path);
                read_accounts(&file, path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        Ok(Self {
            path: path.to_owned(),
            writing: Mutex::new(()),
            table: RwLock::new(Arc::new(Table::new(accounts))),
        })
    }

    /// The accounts file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The account with this name, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<Account> {
        let t = Arc::clone(&self.table.read());
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

    /// Adds an account; [`StoreError::Exists`] if the name (ignoring case) is taken.
    pub fn add(&self, account: Account) -> Result<()> {
        self.change(|accounts, table| {
            if let Some(i) = table.position(account.username.as_str()) {
                return Err(StoreError::Exists {
                    username: accounts[i].username.to_string(),
                });
            }
            accounts.push(account);
            Ok(())
        })
    }

    /// Removes the account with this name (ignoring case) and returns it;
    /// [`StoreError::UnknownAccount`] if there is none.
    pub fn remove(&self, name: &str) -> Result<Account> {
        let mut removed = None;
        self.change(|accounts, table| {
            let i = table
                .position(name)
                .ok_or_else(|| StoreError::UnknownAccount {
                    username: name.to_owned(),
                })?;
            removed = Some(accounts.remove(i));
            Ok(())
        })?;
        removed.ok_or_else(|| StoreError::UnknownAccount {
            username: name.to_owned(),
        })
    }

    /// Replaces the account with the same name (ignoring case), e.g. after a password change;
    /// [`StoreError::UnknownAccount`] if there is none. Every field is replaced as given.
    pub fn update(&self, account: Account) -> Result<()> {
        self.change(|accounts, table| {
            let i = table.position(account.username.as_str()).ok_or_else(|| {
                StoreError::UnknownAccount {
                    username: account.username.to_string(),
                }
            })?;
            accounts[i] = account;
            Ok(())
        })
    }

    /// Applies `f` to a copy of the accounts, writes the file, then publishes the copy. If
    /// anything fails, neither the file nor memory changes.
    fn change(&self, f: impl FnOnce(&mut Vec<Account>, &Table) -> Result<()>) -> Result<()> {
        let _writing = self.writing.lock();
        let current = Arc::clone(&self.table.read());
        let mut next = current.accounts.clone();
        f(&mut next, &current)?;
        let mut buf = Vec::new();
        for a in &next {
            a.encode(&mut buf);
        }
        let dir = files::parent_dir(&self.path);
        crate::private::create_dirs(dir)
            .map_err(|e| StoreError::io("create the directory", dir, e))?;
        files::atomic_rewrite(&self.path, |w| w.write_all(&buf), |_| Ok(()))?;
        *self.table.write() = Arc::new(Table::new(next));
        Ok(())
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

fn read_accounts(file: &File, path: &Path) -> Result<Vec<Account>> {
    let mut accounts: Vec<Account> = Vec::new();
    let mut lines_of: HashMap<String, u64> = HashMap::new();
    let mut reader = LineReader::new(file, path);
    while let Some(line) = reader.next_line()? {
        let bad = |reason| StoreError::BadLine {
            path: path.to_owned(),
            line_number: line.number,
            reason,
        };
        if line.too_long {
            return Err(bad(LineError::TooLong));
        }
        let account = Account::parse(line.bytes).map_err(bad)?;
        if let Some(&first_line) = lines_of.get(&account.username.key()) {
            return Err(StoreError::DuplicateAccount {
                path: path.to_owned(),
                first_line,
                line_number: line.number,
                username: account.username.to_string(),
            });
        }
        lines_of.insert(account.username.key(), line.number);
        accounts.push(account);
    }
    Ok(accounts)
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

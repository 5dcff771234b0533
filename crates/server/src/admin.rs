//! Admin subcommands that work on the data files directly: `user …`, `room …` and `db …`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use gc_protocol::scram::{derive_verifier, random_salt};
use gc_protocol::{Timestamp, Username, Visibility};
use gc_store::{Account, AccountStore, Accounts, DataDirLock, StoreError};

use crate::cli::{DbCommand, ExportFormat, OnOff, RoomCommand, UserCommand};
use crate::config::Config;
use crate::error::ServerError;
use crate::paths;

/// Where admin commands get passwords from.
pub trait PasswordSource {
    /// Asks for a new password (twice on a terminal), or reads one line from standard input.
    fn new_password(&mut self, user: &str, from_stdin: bool) -> Result<String, ServerError>;
}

/// Passwords from the terminal (hidden) or standard input.
#[derive(Debug, Default)]
pub struct Terminal;

impl PasswordSource for Terminal {
    fn new_password(&mut self, user: &str, from_stdin: bool) -> Result<String, ServerError> {
        let io_err = |source| ServerError::Io {
            what: "read a password from",
            path: "standard input".into(),
            source,
        };
        if from_stdin || !std::io::stdin().is_terminal() {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(io_err)?;
            return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
        }
        let first =
            rpassword::prompt_password(format!("New password for {user}: ")).map_err(io_err)?;
        let again = rpassword::prompt_password("Repeat it: ").map_err(io_err)?;
        if first != again {
            return Err(ServerError::Usage(
                "the two passwords differ; nothing was changed".into(),
            ));
        }
        Ok(first)
    }
}

/// Runs `gc-server user …`, writing results to `out`.
pub fn user(
    cmd: &UserCommand,
    config: &Config,
    passwords: &mut dyn PasswordSource,
    out: &mut dyn Write,
) -> Result<(), ServerError> {
    let write_err = |source| ServerError::Io {
        what: "write to",
        path: "standard output".into(),
        source,
    };
    match cmd {
        UserCommand::List => {
            let (accounts, _lock, place) = open_accounts(config, false)?;
            let list = accounts.list()?;
            if list.is_empty() {
                writeln!(out, "no accounts in {place}").map_err(write_err)?;
            }
            for a in list {
                writeln!(
                    out,
                    "{}\tcreated {} UTC\t{} iterations",
                    a.username,
                    a.created.utc_datetime(),
                    a.iterations
                )
                .map_err(write_err)?;
            }
            Ok(())
        }
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            let username = valid_name(name)?;
            let (accounts, _lock, _) = open_accounts(config, true)?;
            if accounts.get(username.as_str())?.is_some() {
                return Err(ServerError::Usage(format!(
                    "an account named {username} already exists (names ignore case)"
                )));
            }
            let password = acceptable(passwords.new_password(name, *password_stdin)?)?;
            accounts.add(make_account(username.clone(), &password, config)?)?;
            // An operator's change to an account, for the log's audit trail (never the password).
            tracing::info!(user = %username, "account added by the operator");
            writeln!(out, "added {username}").map_err(write_err)?;
            Ok(())
        }
        UserCommand::Remove { name } => {
            let (accounts, _lock, _) = open_accounts(config, true)?;
            match accounts.remove(name) {
                Ok(removed) => {
                    tracing::info!(user = %removed.username, "account removed by the operator");
                    writeln!(out, "removed {}", removed.username).map_err(write_err)?;
                    Ok(())
                }
                Err(StoreError::UnknownAccount { .. }) => {
                    Err(ServerError::Usage(format!("no account named {name}")))
                }
                Err(e) => Err(e.into()),
            }
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (accounts, _lock, _) = open_accounts(config, true)?;
            let Some(existing) = accounts.get(name)? else {
                return Err(ServerError::Usage(format!("no account named {name}")));
            };
            let password = acceptable(passwords.new_password(name, *password_stdin)?)?;
            let mut updated = make_account(existing.username.clone(), &password, config)?;
            updated.created = existing.created;
            accounts.update(updated)?;
            tracing::info!(user = %existing.username, "password changed by the operator");
            writeln!(out, "password changed for {}", existing.username).map_err(write_err)?;
            Ok(())
        }
        UserCommand::Admin { name, state } => {
            let _lock = files_lock(config)?;
            let (accounts, _, _) = open_accounts(config, false)?;
            let Some(account) = accounts.get(name)? else {
                return Err(ServerError::Usage(format!("no account named {name}")));
            };
            let (rooms, _) = crate::server::open_rooms(config)?;
            let on = *state == OnOff::On;
            let changed = rooms.set_admin(&account.username, on)?;
            let what = match (on, changed) {
                (true, true) => "is now a server admin",
                (true, false) => "was a server admin already",
                (false, true) => "is no longer a server admin",
                (false, false) => "was not a server admin",
            };
            if changed {
                tracing::info!(user = %account.username, admin = on, "server admin changed by the operator");
            }
            writeln!(out, "{} {what}", account.username).map_err(write_err)?;
            Ok(())
        }
    }
}

/// Runs `gc-server room …`, writing results to `out`.
pub fn room(cmd: &RoomCommand, config: &Config, out: &mut dyn Write) -> Result<(), ServerError> {
    let dir = &config.data_dir;
    let write_err = |source| ServerError::Io {
        what: "write to",
        path: "standard output".into(),
        source,
    };
    match cmd {
        RoomCommand::List => {
            let (rooms, _) = crate::server::open_rooms(config)?;
            let (accounts, _, _) = open_accounts(config, false)?;
            let everyone = accounts.count()?;
            for info in rooms.list() {
                let members = if info.room.is_general() {
                    everyone
                } else {
                    rooms
                        .members(&info.room)
                        .iter()
                        .filter(|m| m.standing.is_member())
                        .count()
                };
                let creator = info
                    .creator
                    .as_ref()
                    .map(|c| format!("by {c} at {} UTC", info.created.utc_datetime()))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}\t{}\t{members} members\t{creator}\t{}",
                    info.room,
                    info.kind_name(),
                    info.topic.escape_debug()
                )
                .map_err(write_err)?;
            }
            Ok(())
        }
        RoomCommand::Members { room } => {
            let (rooms, _) = crate::server::open_rooms(config)?;
            if rooms.get(room).is_none() {
                return Err(ServerError::Usage(format!("there is no room {room}")));
            }
            if room.is_general() {
                writeln!(
                    out,
                    "every account is a member of #general; these have another standing:"
                )
                .map_err(write_err)?;
            }
            for m in rooms.members(room) {
                let muted = m
                    .muted_until
                    .filter(|until| *until > Timestamp::now())
                    .map(|until| format!("\tmuted until {} UTC", until.utc_datetime()))
                    .unwrap_or_default();
                writeln!(out, "{}\t{}{muted}", m.username, m.standing).map_err(write_err)?;
            }
            Ok(())
        }
        RoomCommand::Add {
            room,
            owner,
            private,
            topic,
        } => {
            let _lock = files_lock(config)?;
            let (accounts, _, _) = open_accounts(config, false)?;
            let Some(owner) = accounts.get(owner)? else {
                return Err(ServerError::Usage(format!("no account named {owner}")));
            };
            let (rooms, _) = crate::server::open_rooms(config)?;
            let visibility = if *private {
                Visibility::Private
            } else {
                Visibility::Public
            };
            match rooms.create(room, visibility, &owner.username, topic, Timestamp::now()) {
                Ok(_) => {}
                Err(StoreError::RoomExists { .. }) => {
                    return Err(ServerError::Usage(format!(
                        "the room {room} exists already"
                    )));
                }
                Err(e @ StoreError::RoomRule { .. }) => {
                    return Err(ServerError::Usage(e.to_string()));
                }
                Err(e) => return Err(e.into()),
            }
            writeln!(
                out,
                "added {room} ({visibility}), owned by {}",
                owner.username
            )
            .map_err(write_err)?;
            Ok(())
        }
        RoomCommand::Remove { room } => {
            // The message store's lock is the data dir's: no server runs meanwhile.
            let (store, _) = open_store(config)?;
            let (rooms, _) = crate::server::open_rooms(config)?;
            if room.is_general() {
                return Err(ServerError::Usage("#general cannot be removed".into()));
            }
            if rooms.get(room).is_none() {
                return Err(ServerError::Usage(format!("there is no room {room}")));
            }
            // The notice first: it is a record newer than every one of the room, so the id
            // sequence never goes back when the room's file is put aside (a client's cursor may
            // be beyond the room's last id).
            let system = Username::new(gc_protocol::limits::RESERVED_USERNAME)
                .map_err(|_| ServerError::Usage("the reserved name is invalid".into()))?;
            let id = gc_protocol::ClientMsgId::random().map_err(|e| {
                ServerError::Usage(format!("no randomness available to make an id: {e}"))
            })?;
            store.append_in(
                &gc_protocol::Room::general(),
                &system,
                &id,
                &format!("the operator removed {room}"),
            )?;
            store.close()?;
            let file = dir
                .join(gc_store::ROOMS_DIR)
                .join(format!("{}.db", room.file_stem()));
            let kept = if file.exists() {
                let aside = dir.join(gc_store::ROOMS_DIR).join(format!(
                    "{}.db.removed-{}",
                    room.file_stem(),
                    Timestamp::now().as_micros() / 1_000_000
                ));
                std::fs::rename(&file, &aside).map_err(|source| ServerError::Io {
                    what: "move aside",
                    path: file.clone(),
                    source,
                })?;
                Some(aside)
            } else {
                None
            };
            rooms.remove(room)?;
            match kept {
                Some(aside) => writeln!(
                    out,
                    "removed {room}; its messages are kept in {}",
                    aside.display()
                ),
                None => writeln!(out, "removed {room} (it had no messages)"),
            }
            .map_err(write_err)?;
            Ok(())
        }
    }
}

/// Opens the message store for an admin command (which then holds the data dir's lock).
fn open_store(
    config: &Config,
) -> Result<(gc_store::MessageStore, gc_store::OpenReport), ServerError> {
    gc_store::MessageStore::open(&config.data_dir, gc_store::StoreConfig::default()).map_err(|e| {
        match e {
            StoreError::Locked { path } => ServerError::Usage(format!(
                "{} is locked: a gc-server is running on this data dir; stop it first",
                path.display()
            )),
            other => other.into(),
        }
    })
}

/// What [`open_accounts`] gives: the accounts, the data dir's lock if taken, where they are.
type OpenedAccounts = (Box<dyn AccountStore>, Option<DataDirLock>, String);

/// The accounts the configuration names, where they are (for messages), and the data dir's
/// lock when they are its file and `change` is asked (a running server must not be changed
/// under; a shared database is made for it).
fn open_accounts(config: &Config, change: bool) -> Result<OpenedAccounts, ServerError> {
    if let Some(url) = &config.store {
        let url = crate::config::database_url(url)?;
        gc_pgstore::migrate(&url)?;
        return Ok((
            Box::new(gc_pgstore::PgAccounts::new(&url)),
            None,
            url.to_string(),
        ));
    }
    let dir = &config.data_dir;
    let held = if change { Some(lock(dir)?) } else { None };
    let path = paths::accounts(dir);
    let accounts = Accounts::open(&path)?;
    if held.is_some() {
        // Under the lock, a torn last line (a crash mid-append) is ours to cut.
        accounts.recover()?;
    }
    Ok((Box::new(accounts), held, path.display().to_string()))
}

/// Runs `gc-server db …`. Returns whether the store is healthy (for `check`'s exit code).
pub fn db(cmd: &DbCommand, config: &Config, out: &mut dyn Write) -> Result<bool, ServerError> {
    let dir = &config.data_dir;
    let write_err = |source| ServerError::Io {
        what: "write to",
        path: "standard output".into(),
        source,
    };
    match cmd {
        DbCommand::Migrate => {
            let Some(url) = &config.store else {
                return Err(ServerError::Usage(
                    "db migrate is for a PostgreSQL store: give its URL with --store URL, \
                     GC_STORE=URL or store = \"URL\" in the config file (the flat files need no \
                     migration)"
                        .into(),
                ));
            };
            let url = crate::config::database_url(url)?;
            let r = gc_pgstore::migrate(&url)?;
            if r.applied.is_empty() {
                writeln!(out, "{url}: schema version {}, up to date", r.to)
            } else {
                for (version, name) in &r.applied {
                    writeln!(out, "{url}: applied migration {version} ({name})")
                        .map_err(write_err)?;
                }
                writeln!(out, "{url}: schema version {} (was {})", r.to, r.from)
            }
            .map_err(write_err)?;
            Ok(true)
        }
        DbCommand::Check { backup } => {
            let dir = backup.as_deref().unwrap_or(dir);
            // A backup is first held to its manifest: a partial copy has none and is refused.
            let verified = match backup {
                Some(b) => Some(gc_store::verify_backup(b).map_err(|e| match e {
                    e @ StoreError::NotABackup { .. } => ServerError::Usage(e.to_string()),
                    e => e.into(),
                })?),
                None => None,
            };
            let r = gc_store::check(dir)?;
            for f in &r.files {
                let name = if f.room.is_general() {
                    String::new()
                } else {
                    format!(" ({})", f.room)
                };
                writeln!(
                    out,
                    "{}{name}: {} lines, {} records, ids {}..{}",
                    f.path.display(),
                    f.lines,
                    f.records,
                    f.first_id,
                    f.last_id
                )
                .map_err(write_err)?;
                for bad in &f.bad_lines {
                    writeln!(out, "  bad line {}: {}", bad.line_number, bad.reason)
                        .map_err(write_err)?;
                }
                if f.bad_line_count as usize > f.bad_lines.len() {
                    writeln!(out, "  … {} bad lines in all", f.bad_line_count)
                        .map_err(write_err)?;
                }
                if f.torn_tail {
                    writeln!(
                        out,
                        "  the last line has no LF: a write in progress, or a torn write the \
                         server moves aside when it starts"
                    )
                    .map_err(write_err)?;
                }
            }
            if r.duplicate_ids > 0 {
                writeln!(
                    out,
                    "{} ids are in more than one room's file (ids are one sequence across rooms); \
                     the server refuses to start until the copies are removed",
                    r.duplicate_ids
                )
                .map_err(write_err)?;
            }
            let accounts = paths::accounts(dir);
            if r.accounts_lines > 0 || !r.accounts_bad_lines.is_empty() {
                writeln!(
                    out,
                    "{}: {} lines, {} bad",
                    accounts.display(),
                    r.accounts_lines,
                    r.accounts_bad_lines.len()
                )
                .map_err(write_err)?;
            }
            for b in &r.accounts_bad_lines {
                writeln!(out, "  line {}: {}", b.line_number, b.reason).map_err(write_err)?;
            }
            if !r.accounts_bad_lines.is_empty() {
                writeln!(
                    out,
                    "{} bad account lines: the server refuses to start; stop it and run `gc-server \
                     db repair` to move them to {}.corrupt (those accounts must register again or \
                     be restored)",
                    r.accounts_bad_lines.len(),
                    accounts.display()
                )
                .map_err(write_err)?;
            }
            let mut intact = true;
            if let Some(v) = &verified {
                writeln!(
                    out,
                    "backup taken {}: {} records, {} files listed in {}",
                    v.taken,
                    v.records,
                    v.files.len(),
                    gc_store::MANIFEST_FILE
                )
                .map_err(write_err)?;
                if r.records != v.records {
                    writeln!(
                        out,
                        "  the message files hold {} records, the manifest says {}",
                        r.records, v.records
                    )
                    .map_err(write_err)?;
                    intact = false;
                }
                for p in &v.problems {
                    writeln!(out, "  {p}").map_err(write_err)?;
                }
                intact &= v.problems.is_empty();
                if !intact {
                    writeln!(
                        out,
                        "the backup differs from what was copied: do not restore from it"
                    )
                    .map_err(write_err)?;
                }
            }
            if r.is_ok() && intact {
                writeln!(out, "ok").map_err(write_err)?;
            } else if r.bad_line_count > u64::from(r.torn_tail) {
                let torn = r.files.iter().filter(|f| f.torn_tail).count() as u64;
                writeln!(
                    out,
                    "{} bad lines; stop the server and run `gc-server db repair` to move them \
                     to <file>.corrupt",
                    r.bad_line_count - torn
                )
                .map_err(write_err)?;
            }
            Ok(r.is_ok() && intact)
        }
        DbCommand::Backup { dest } => {
            if config.store.is_some() {
                return Err(ServerError::Usage(
                    "db backup copies a data dir's files; a PostgreSQL store (--store) is backed \
                     up with PostgreSQL's own tools: `pg_dump -Fc DBNAME > gc.dump` while the \
                     instances run (one consistent snapshot), `pg_restore` to restore (see \
                     docs/operations.md, \"Several instances on one PostgreSQL\")"
                        .into(),
                ));
            }
            let started = std::time::Instant::now();
            let r = gc_store::backup(dir, dest).map_err(|e| match e {
                e @ StoreError::BackupTarget { .. } => ServerError::Usage(e.to_string()),
                e => e.into(),
            })?;
            let took = started.elapsed();
            tracing::info!(dest = %r.dest.display(), records = r.records, bytes = r.bytes(),
                ms = took.as_millis() as u64, "backup made");
            writeln!(
                out,
                "backed up {} records ({} files, {} bytes) into {} in {:.2} s (appends waited \
                 at most {} µs for the cut); check it with `gc-server db check {}`",
                r.records,
                r.files.len(),
                r.bytes(),
                r.dest.display(),
                took.as_secs_f64(),
                r.lock_held.as_micros(),
                r.dest.display()
            )
            .map_err(write_err)?;
            if r.objects > 0 || !r.missing_objects.is_empty() {
                writeln!(
                    out,
                    "shared files: files/index.db and the {} stored files it names",
                    r.objects
                )
                .map_err(write_err)?;
            }
            for hash in &r.missing_objects {
                writeln!(
                    out,
                    "warning: files/index.db names {hash}, which is not stored in {}: the backup \
                     cannot hold it (`gc-server files verify` lists such)",
                    dir.display()
                )
                .map_err(write_err)?;
            }
            for hash in &r.damaged_objects {
                writeln!(
                    out,
                    "warning: the stored file {hash} in {} does not have that SHA-256 (damaged); \
                     it was copied as it is (`gc-server files verify` lists such)",
                    dir.display()
                )
                .map_err(write_err)?;
            }
            Ok(true)
        }
        DbCommand::Repair => {
            let r = gc_store::repair(dir)?;
            if r.corrupt_paths.is_empty() {
                writeln!(out, "kept {} records; nothing to repair", r.kept)
            } else {
                let paths: Vec<String> = r
                    .corrupt_paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                writeln!(
                    out,
                    "kept {} records; moved {} bad lines to {}",
                    r.kept,
                    r.moved_count,
                    paths.join(", ")
                )
            }
            .map_err(write_err)?;
            Ok(true)
        }
        DbCommand::Export {
            format,
            output,
            room,
        } => {
            let format = match format {
                ExportFormat::Plain => gc_store::ExportFormat::Plain,
                ExportFormat::Json => gc_store::ExportFormat::JsonLines,
            };
            let pg = match &config.store {
                Some(url) => Some(crate::config::database_url(url)?),
                None => None,
            };
            let export = |out: &mut dyn Write| -> Result<gc_store::ExportReport, ServerError> {
                Ok(match (&pg, room) {
                    (Some(url), room) => gc_pgstore::export(url, room.as_ref(), format, out)?,
                    (None, Some(room)) => gc_store::export_room(dir, room, format, out)?,
                    (None, None) => gc_store::export(dir, format, out)?,
                })
            };
            let report = match output {
                Some(path) => {
                    // Every message of the server: as private as the data dir it comes from.
                    let file = gc_store::private::open(
                        path,
                        gc_store::private::options()
                            .write(true)
                            .create(true)
                            .truncate(true),
                    )
                    .map_err(|source| ServerError::Io {
                        what: "create",
                        path: path.clone(),
                        source,
                    })?;
                    let mut w = std::io::BufWriter::new(file);
                    let report = export(&mut w)?;
                    w.flush().map_err(|source| ServerError::Io {
                        what: "write",
                        path: path.clone(),
                        source,
                    })?;
                    report
                }
                None => export(out)?,
            };
            tracing::info!("exported {} records", report.records);
            Ok(true)
        }
        DbCommand::Import {
            original,
            from_dir,
            from_postgres,
        } => {
            if let Some(original) = original {
                let r = gc_store::import_original(dir, original).map_err(|e| match e {
                    StoreError::Locked { .. } => ServerError::Usage(format!(
                        "a server is running on {}: stop it before importing",
                        dir.display()
                    )),
                    e => e.into(),
                })?;
                import_report(&r, original, dir, out).map_err(write_err)?;
                return Ok(true);
            }
            let url = pg_url(
                config,
                if *from_postgres {
                    "--from-postgres"
                } else {
                    "--from-dir"
                },
            )?;
            let (r, source, target) = match from_dir {
                Some(from) => (
                    gc_pgstore::load_dir(from, &url).map_err(|e| locked(e, from))?,
                    from.display().to_string(),
                    url.to_string(),
                ),
                None => (
                    gc_pgstore::unload_to_dir(&url, dir).map_err(|e| locked(e, dir))?,
                    url.to_string(),
                    dir.display().to_string(),
                ),
            };
            transfer_report(&r, &source, &target, out).map_err(write_err)?;
            Ok(true)
        }
        DbCommand::Summary => {
            let summary = match &config.store {
                Some(url) => {
                    let url = crate::config::database_url(url)?;
                    let s = gc_pgstore::summary(&url)?;
                    format!("{url}: {s}")
                }
                None => {
                    let (s, report) = gc_store::summary(dir)?;
                    if let Some(torn) = report.skipped_torn_tail {
                        writeln!(
                            out,
                            "(left out a torn last line, line {}: a write in progress, or one \
                             the server moves aside when it starts)",
                            torn.line_number
                        )
                        .map_err(write_err)?;
                    }
                    format!("{}: {s}", dir.display())
                }
            };
            writeln!(out, "{summary}").map_err(write_err)?;
            Ok(true)
        }
    }
}

/// A transfer's error, saying what to do when it met a running server's lock on `dir`.
fn locked(e: gc_pgstore::TransferError, dir: &Path) -> ServerError {
    match e {
        gc_pgstore::TransferError::Files(StoreError::Locked { .. }) => ServerError::Usage(format!(
            "a server is running on {}: stop it before importing",
            dir.display()
        )),
        e => e.into(),
    }
}

/// The PostgreSQL store's URL, which `flag` needs.
fn pg_url(config: &Config, flag: &str) -> Result<gc_pgstore::DbUrl, ServerError> {
    let Some(url) = &config.store else {
        return Err(ServerError::Usage(format!(
            "db import {flag} needs the PostgreSQL store: give its URL with --store URL, \
             GC_STORE=URL or store = \"URL\" in the config file"
        )));
    };
    crate::config::database_url(url)
}

/// What a transfer says: both sides' counts and hashes (equal, or it failed), and notes.
fn transfer_report(
    r: &gc_pgstore::Transfer,
    source: &str,
    target: &str,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(out, "source {source}: {}", r.source)?;
    writeln!(out, "target {target}: {}", r.target)?;
    writeln!(
        out,
        "copied and checked; {} client-msg-ids carried over (retries of those messages stay \
         duplicates)",
        r.client_msg_ids
    )?;
    if r.file_announcements > 0 {
        writeln!(
            out,
            "  {} announcements of shared files carried over (their content stays in the files \
             directory)",
            r.file_announcements
        )?;
    }
    if r.skipped_msgids > 0 {
        writeln!(
            out,
            "  {} invalid database.msgids lines skipped",
            r.skipped_msgids
        )?;
    }
    if let Some(torn) = &r.skipped_torn_tail {
        writeln!(
            out,
            "  a torn last line (line {}: {}) was left out, as the server would",
            torn.line_number, torn.reason
        )?;
    }
    Ok(())
}

/// What `db import` says: what came in, what was changed on the way, and each line left out.
fn import_report(
    r: &gc_store::ImportReport,
    original: &Path,
    dir: &Path,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "imported {} of {} lines of {} into {} as #general (ids 1-{})",
        r.imported,
        r.lines,
        original.display(),
        dir.join(gc_store::DATABASE_FILE).display(),
        r.imported
    )?;
    let notes = [
        (r.blank, "blank lines skipped"),
        (
            r.repeated_ids,
            "original ids repeated an earlier one (the prototype restarted them)",
        ),
        (r.renumbered, "records renumbered"),
        (r.truncated_timestamps, "timestamps cut to the microsecond"),
        (
            r.earlier_timestamps,
            "timestamps earlier than the record before (kept as they were)",
        ),
        (
            r.kept_backslashes,
            "backslashes without a known escape, kept as written",
        ),
    ];
    for (n, what) in notes {
        if n > 0 {
            writeln!(out, "  {n} {what}")?;
        }
    }
    if r.no_final_newline {
        writeln!(
            out,
            "  the last line had no newline; it was read all the same"
        )?;
    }
    if r.unread_count > 0 {
        writeln!(
            out,
            "{} lines could not be read and were left out:",
            r.unread_count
        )?;
        for (line, why) in &r.unread {
            writeln!(out, "  line {line}: {why}")?;
        }
        if r.unread_count > r.unread.len() as u64 {
            writeln!(
                out,
                "  … and {} more",
                r.unread_count - r.unread.len() as u64
            )?;
        }
    }
    Ok(())
}

/// The data dir's lock when the metadata to change is in its files (a shared database is made
/// to be changed while instances run).
fn files_lock(config: &Config) -> Result<Option<DataDirLock>, ServerError> {
    match config.store {
        Some(_) => Ok(None),
        None => lock(&config.data_dir).map(Some),
    }
}

fn lock(dir: &Path) -> Result<DataDirLock, ServerError> {
    DataDirLock::acquire(dir).map_err(|e| match e {
        StoreError::Locked { path } => ServerError::Usage(format!(
            "{} is locked: a gc-server is running on this data dir; stop it first (accounts \
             can also be registered over the network when registration is open)",
            path.display()
        )),
        other => other.into(),
    })
}

fn valid_name(name: &str) -> Result<Username, ServerError> {
    let username = Username::new(name).map_err(|_| {
        ServerError::Usage(format!(
            "`{name}` is not a valid username: use 1-32 characters of A-Z a-z 0-9 _ . -"
        ))
    })?;
    if username.is_reserved() {
        return Err(ServerError::Usage(format!(
            "{name} is reserved for server notices"
        )));
    }
    Ok(username)
}

/// Refuses a password that may not be chosen: empty, or shorter than
/// [`gc_protocol::limits::MIN_PASSWORD_CHARS`]. Here the server sees the password, so this check
/// is authoritative (unlike a `Register`, which carries only the verifier).
fn acceptable(password: String) -> Result<String, ServerError> {
    if password.is_empty() {
        return Err(ServerError::Usage(
            "the password is empty; nothing was changed".into(),
        ));
    }
    gc_protocol::limits::check_new_password(&password)
        .map_err(|why| ServerError::Usage(format!("{why}; nothing was changed")))?;
    Ok(password)
}

fn make_account(
    username: Username,
    password: &str,
    config: &Config,
) -> Result<Account, ServerError> {
    let salt = random_salt().map_err(|e| ServerError::Usage(e.to_string()))?;
    let v = derive_verifier(password, &salt, config.scram_min_iterations);
    Ok(Account {
        username,
        salt: v.salt,
        iterations: v.iterations,
        stored_key: v.stored_key.to_vec(),
        server_key: v.server_key.to_vec(),
        created: Timestamp::now(),
    })
}

/// `gc-server plugins list`: what would load from the mods directory, and why not, read from
/// the files without running any plugin code.
pub fn plugins_list(config: &Config, out: &mut dyn Write) -> Result<(), ServerError> {
    let dir = config.mods_dir();
    let lines = gc_plugin::Plugins::listing(&dir, gc_plugin::Side::Server)
        .map_err(|e| ServerError::Usage(e.to_string()))?;
    write_listing(lines, out)
}

/// `gc-server plugins list --load`: as [`plugins_list`], by loading each library (its
/// initialisers run here), which also reads libraries built without a static descriptor.
pub fn plugins_list_loading(config: &Config, out: &mut dyn Write) -> Result<(), ServerError> {
    let dir = config.mods_dir();
    let lines = gc_plugin::Plugins::listing_loading(&dir, gc_plugin::Side::Server)
        .map_err(|e| ServerError::Usage(e.to_string()))?;
    write_listing(lines, out)
}

fn write_listing(lines: Vec<String>, out: &mut dyn Write) -> Result<(), ServerError> {
    let write_err = |source| ServerError::Io {
        what: "write to",
        path: "standard output".into(),
        source,
    };
    for line in lines {
        // A library's descriptor names it and says what it does: its words, sanitised.
        let line = gc_protocol::sanitize::sanitize(&line);
        writeln!(out, "{line}").map_err(write_err)?;
    }
    Ok(())
}

/// `gc-server tls fingerprint`: the fingerprint clients pin, of the configured certificate
/// (`tls_cert`) or of the data dir's own identity (made if missing).
pub fn tls_fingerprint(config: &Config, out: &mut dyn Write) -> Result<(), ServerError> {
    let identity = crate::tls::identity(config)?;
    writeln!(out, "{}", identity.fingerprint()).map_err(|source| ServerError::Io {
        what: "write to",
        path: "standard output".into(),
        source,
    })
}

//! Which files of a mods directory may be looked at as plugins at all. Loading a library runs its
//! code with the program's rights, so a directory or library that someone else could have
//! changed (writable by group or others, or owned by another account than the one running the
//! program or root) is refused, and so is a symbolic link that leads out of the directory (the
//! checks of the directory would not cover its target).

use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};

use crate::host::PluginError;

/// A candidate file and whether it may be loaded.
pub(crate) type Checked = (PathBuf, Result<(), PluginError>);

/// The candidate files of `dir`, in name order: files (or links to files inside `dir`) with the
/// platform's shared-library extension, each with whether it may be loaded. An absent directory
/// has none; one that someone else could change is an error.
pub(crate) fn candidates(dir: &Path) -> Result<Vec<Checked>, PluginError> {
    let read_dir_error = |source| PluginError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_dir_error(e)),
    };
    if !meta.is_dir() {
        return Err(read_dir_error(std::io::Error::other("not a directory")));
    }
    owner_and_mode(dir, &meta, "the mods directory")?;
    let real_dir = fs::canonicalize(dir).map_err(read_dir_error)?;
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_error)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        if path
            .extension()
            .is_none_or(|e| e != std::env::consts::DLL_EXTENSION)
        {
            continue;
        }
        let Ok(link_meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let checked = if link_meta.file_type().is_symlink() {
            match link_target(&path, &real_dir) {
                Ok(Some(meta)) => owner_and_mode(&path, &meta, "the library"),
                // A link to a directory or other non-file: not a candidate, as such a file.
                Ok(None) => continue,
                Err(e) => Err(e),
            }
        } else if link_meta.is_file() {
            owner_and_mode(&path, &link_meta, "the library")
        } else {
            continue;
        };
        files.push((path, checked));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// Where the link `path` leads, if inside `real_dir`: its target's metadata (`None` when the
/// target is not a regular file).
fn link_target(path: &Path, real_dir: &Path) -> Result<Option<Metadata>, PluginError> {
    let target = fs::canonicalize(path).map_err(|e| PluginError::Unsafe {
        path: path.to_owned(),
        reason: format!("a symbolic link whose target cannot be followed ({e})"),
    })?;
    if !target.starts_with(real_dir) {
        return Err(PluginError::SymlinkOutside {
            path: path.to_owned(),
            target,
            dir: real_dir.to_owned(),
        });
    }
    let meta = fs::metadata(&target).map_err(|e| PluginError::Unsafe {
        path: path.to_owned(),
        reason: format!("a symbolic link whose target cannot be read ({e})"),
    })?;
    Ok(meta.is_file().then_some(meta))
}

/// Refuses `path` (`what` says which) if it is writable by group or others, or owned by neither
/// the account running this program nor root.
#[cfg(unix)]
fn owner_and_mode(path: &Path, meta: &Metadata, what: &str) -> Result<(), PluginError> {
    use std::os::unix::fs::MetadataExt;
    let unsafe_because = |reason: String| PluginError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    let mode = meta.mode() & 0o7777;
    let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("its group and by others"),
        (true, false) => Some("its group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = who {
        return Err(unsafe_because(format!(
            "{what} is writable by {who} (mode {mode:04o}): whoever can write it can make this \
             program run their code; remove that permission (chmod go-w {})",
            path.display()
        )));
    }
    let owner = meta.uid();
    let me = rustix::process::geteuid().as_raw();
    if owner != me && owner != 0 {
        return Err(unsafe_because(format!(
            "{what} belongs to uid {owner}, neither the account running this program (uid {me}) \
             nor root: its owner can change what runs here; give it to this account (chown) or \
             use a mods directory of its own"
        )));
    }
    Ok(())
}

/// No ownership or permission bits to check on this platform.
#[cfg(not(unix))]
fn owner_and_mode(_path: &Path, _meta: &Metadata, _what: &str) -> Result<(), PluginError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn lib_name(stem: &str) -> String {
        format!("{stem}.{}", std::env::consts::DLL_EXTENSION)
    }

    #[test]
    fn a_private_directory_lists_its_libraries_in_name_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        chmod(dir.path(), 0o755);
        for name in ["b", "a"] {
            fs::write(dir.path().join(lib_name(name)), b"x").expect("write");
        }
        fs::write(dir.path().join("notes.txt"), b"x").expect("write");
        fs::create_dir(dir.path().join(lib_name("subdir"))).expect("mkdir");
        let found = candidates(dir.path()).expect("candidates");
        let names: Vec<_> = found
            .iter()
            .map(|(p, ok)| (p.file_name().map(|n| n.to_owned()), ok.is_ok()))
            .collect();
        assert_eq!(
            names,
            [
                (Some(lib_name("a").into()), true),
                (Some(lib_name("b").into()), true)
            ]
        );
    }

    #[test]
    fn an_absent_directory_has_no_candidates() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            candidates(&dir.path().join("nope"))
                .expect("absent")
                .is_empty()
        );
    }

    #[test]
    fn a_group_or_world_writable_directory_is_refused() {
        for mode in [0o775, 0o757, 0o777] {
            let dir = tempfile::tempdir().expect("tempdir");
            chmod(dir.path(), mode);
            let e = candidates(dir.path()).expect_err("refused");
            let text = e.to_string();
            assert!(matches!(e, PluginError::Unsafe { .. }), "{text}");
            assert!(
                text.contains(&format!("mode 0{mode:o}")) && text.contains("chmod go-w"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_writable_library_is_refused_and_the_others_are_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (good, bad) = (
            dir.path().join(lib_name("good")),
            dir.path().join(lib_name("bad")),
        );
        fs::write(&good, b"x").expect("write");
        fs::write(&bad, b"x").expect("write");
        chmod(&good, 0o755);
        chmod(&bad, 0o666);
        let found = candidates(dir.path()).expect("candidates");
        let result = |path: &Path| &found.iter().find(|(p, _)| p == path).expect("listed").1;
        assert!(result(&good).is_ok());
        let text = result(&bad).as_ref().expect_err("refused").to_string();
        assert!(
            text.contains("writable by its group and by others (mode 0666)"),
            "{text}"
        );
    }

    #[test]
    fn symlinks_inside_are_followed_and_symlinks_outside_are_refused() {
        let outside = tempfile::tempdir().expect("tempdir");
        let elsewhere = outside.path().join(lib_name("elsewhere"));
        fs::write(&elsewhere, b"x").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join(lib_name("real"));
        fs::write(&real, b"x").expect("write");
        symlink(&real, dir.path().join(lib_name("inside"))).expect("symlink");
        symlink(&elsewhere, dir.path().join(lib_name("outside"))).expect("symlink");
        // Relative and through `..`: leaving the directory however it is spelt.
        symlink(
            Path::new("..")
                .join(outside.path().file_name().expect("name"))
                .join(lib_name("elsewhere")),
            dir.path().join(lib_name("sneaky")),
        )
        .expect("symlink");
        symlink(
            dir.path().join("missing"),
            dir.path().join(lib_name("dangling")),
        )
        .expect("symlink");
        let found = candidates(dir.path()).expect("candidates");
        let result = |stem: &str| {
            let path = dir.path().join(lib_name(stem));
            &found.iter().find(|(p, _)| *p == path).expect("listed").1
        };
        assert!(result("real").is_ok());
        assert!(result("inside").is_ok());
        for stem in ["outside", "sneaky"] {
            let e = result(stem).as_ref().expect_err("refused");
            assert!(matches!(e, PluginError::SymlinkOutside { .. }), "{e}");
            assert!(e.to_string().contains("outside the mods directory"), "{e}");
        }
        assert!(result("dangling").is_err());
    }

    #[test]
    fn a_library_owned_by_another_account_is_refused() {
        // Only root can give a file away; as anyone else there is nothing to make here.
        if rustix::process::geteuid().as_raw() != 0 {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let theirs = dir.path().join(lib_name("theirs"));
        fs::write(&theirs, b"x").expect("write");
        std::os::unix::fs::chown(&theirs, Some(65534), None).expect("chown");
        let found = candidates(dir.path()).expect("candidates");
        let text = found[0].1.as_ref().expect_err("refused").to_string();
        assert!(text.contains("belongs to uid 65534"), "{text}");
        // And a directory of someone else's.
        std::os::unix::fs::chown(dir.path(), Some(65534), None).expect("chown");
        let text = candidates(dir.path()).expect_err("refused").to_string();
        assert!(
            text.contains("the mods directory belongs to uid 65534"),
            "{text}"
        );
    }
}

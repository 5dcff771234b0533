//! check / repair / export on a data dir.

use std::fs;

use gc_store::{ExportFormat, LineError, StoreError, check, export};

use crate::support::{cmid, open, user};

#[test]
fn check_reports_counts_and_msgids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(dir.path());
        for i in 0..3 {
            s.append(&user("a"), &cmid(&format!("m{i}")), "x").unwrap();
        }
    }
    let mut ids = fs::read_to_string(dir.path().join("database.msgids")).unwrap();
    ids.push_str("9;a;m9\nbad\n");
    fs::write(dir.path().join("database.msgids"), ids).unwrap();
    let mut db = fs::read(dir.path().join("database.db")).unwrap();
    db.extend_from_slice(b"4;1;a;partial");
    fs::write(dir.path().join("database.db"), db).unwrap();

    let c = check(dir.path()).unwrap();
    assert_eq!((c.lines, c.records, c.first_id, c.last_id), (4, 3, 1, 3));
    assert_eq!((c.bad_line_count, c.torn_tail), (1, true));
    assert_eq!(c.bad_lines[0].reason, LineError::Torn);
    assert_eq!(
        (c.msgids_lines, c.msgids_bad_lines, c.msgids_beyond_last),
        (5, 1, 1)
    );
    // A torn last line alone is not damage: the next open moves it aside.
    assert!(c.is_ok());
    let mut db = fs::read(dir.path().join("database.db")).unwrap();
    db.splice(0..0, b"garbage line\n".iter().copied());
    fs::write(dir.path().join("database.db"), db).unwrap();
    assert!(!check(dir.path()).unwrap().is_ok());
}

#[test]
fn check_and_export_need_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = check(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::Io { action: "open", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("database.db"), "{err}");
    let err = export(dir.path(), ExportFormat::Plain, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("database.db"), "{err}");
}

#[test]
fn export_formats() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("database.db"),
        "1;1640995200.123;alice;Hello, world!\n2;1640995201;bob;say \"hi\"\\n\\\\\n3;1640995202;al",
    )
    .unwrap();
    let mut out = Vec::new();
    let rep = export(dir.path(), ExportFormat::JsonLines, &mut out).unwrap();
    assert_eq!(rep.records, 2);
    assert_eq!(rep.skipped_torn_tail.map(|t| t.line_number), Some(3));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"id\":1,\"timestamp\":\"1640995200.123\",\"username\":\"alice\",\"message\":\"Hello, world!\"}\n\
         {\"id\":2,\"timestamp\":\"1640995201\",\"username\":\"bob\",\"message\":\"say \\\"hi\\\"\\n\\\\\"}\n"
    );
    let mut out = Vec::new();
    export(dir.path(), ExportFormat::Plain, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1;1640995200.123;alice;Hello, world!\n\
         2;1640995201;bob;say \"hi\"\\n\\\\\n"
    );
    // The torn tail is left alone: export only reads.
    assert!(
        fs::read_to_string(dir.path().join("database.db"))
            .unwrap()
            .ends_with(";al")
    );
}

#[test]
fn export_stops_at_a_bad_middle_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("database.db"),
        "1;1;a;x\n1;2;a;dup\n3;3;a;z\n",
    )
    .unwrap();
    let err = export(dir.path(), ExportFormat::Plain, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::BadLine {
                line_number: 2,
                reason: LineError::NotIncreasing { id: 1, previous: 1 },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn export_output_errors_are_reported() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("pipe closed"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("database.db"), "1;1;a;x\n").unwrap();
    let err = export(dir.path(), ExportFormat::JsonLines, &mut Broken).unwrap_err();
    assert!(matches!(err, StoreError::ExportOutput { .. }), "{err:?}");
}

//! What a line typed in the input means: a message, or a `/command`; and the command names Tab
//! completes.
//!
//! Only the shape is checked here (how many words, a number where one is needed): names of
//! users and rooms are checked by the app, which says what is wrong with them.

use gc_protocol::{RoomRole, Visibility};

use super::scrollback::ME_PREFIX;

/// A submitted input line, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this text as a message, into the room shown.
    Message(String),
    /// `/help`.
    Help,
    /// `/quit` (or `/exit`).
    Quit,
    /// `/who`: who is online in the room shown.
    Who,
    /// `/search TEXT`; empty ends the search.
    Search(String),
    /// `/urls`: the URLs of the room shown.
    Urls,
    /// `/clear`.
    Clear,
    /// `/reconnect`.
    Reconnect,
    /// `/join ROOM`.
    Join(String),
    /// `/part [ROOM]`: the room shown when none is named.
    Part(Option<String>),
    /// `/msg USER [TEXT]`: opens the direct conversation with USER and sends TEXT into it.
    Msg {
        /// Who.
        user: String,
        /// What (empty: only open the conversation).
        text: String,
    },
    /// `/invite USER`.
    Invite(String),
    /// `/topic [TEXT]`: `None` shows the topic; `-delete` clears it (`Some("")`).
    Topic(Option<String>),
    /// `/kick USER [REASON]`.
    Kick {
        /// Who.
        user: String,
        /// Why (may be empty).
        reason: String,
    },
    /// `/mute USER MINUTES [REASON]`; `0` minutes lifts the mute.
    Mute {
        /// Who.
        user: String,
        /// For how long.
        minutes: u32,
        /// Why (may be empty).
        reason: String,
    },
    /// `/ban USER [REASON]`.
    Ban {
        /// Who.
        user: String,
        /// Why (may be empty).
        reason: String,
    },
    /// `/unban USER`.
    Unban(String),
    /// `/role USER owner|moderator|member`.
    Role {
        /// Whose role.
        user: String,
        /// The new role.
        role: RoomRole,
    },
    /// `/privacy public|private`.
    Privacy(Visibility),
    /// `/create ROOM [private]`.
    Create {
        /// The name, as typed.
        room: String,
        /// Public (anyone may join) or private (the invited).
        visibility: Visibility,
    },
    /// `/rooms`: the public rooms and this account's.
    Rooms,
    /// `/away [MESSAGE]` (GC/4).
    Away(String),
    /// `/back` (GC/4).
    Back,
    /// `/passwd` (GC/4): the passwords are asked for next, without echo.
    Passwd,
    /// `/ignore [USER]`: hide USER's messages; without a name, list who is ignored.
    Ignore(Option<String>),
    /// `/unignore USER`.
    Unignore(String),
    /// `/upload PATH` (GC/5): share a file in the room shown. The path is the rest of the line
    /// (blanks at its end left out).
    Upload(String),
    /// `/download [N|HASH]` (GC/5): a file shared in the room shown (`None`: the selected or
    /// the newest one).
    Download(Option<String>),
    /// A command used the wrong way: how to use it.
    Usage(&'static str),
    /// Not a command we know: never sent.
    Unknown(String),
}

/// The command names Tab completes (aliases left out), in the order `/help` lists them.
pub const COMMANDS: &[&str] = &[
    "/help",
    "/me",
    "/msg",
    "/who",
    "/join",
    "/part",
    "/create",
    "/rooms",
    "/topic",
    "/invite",
    "/kick",
    "/mute",
    "/ban",
    "/unban",
    "/role",
    "/privacy",
    "/away",
    "/back",
    "/passwd",
    "/upload",
    "/download",
    "/search",
    "/ignore",
    "/unignore",
    "/urls",
    "/clear",
    "/reconnect",
    "/quit",
];

/// Every command name [`parse`] knows, aliases included, without the slash: a plugin may not add
/// a command of one of these names (it would never run, and would mislead `/help`).
pub const BUILTIN_NAMES: &[&str] = &[
    "help",
    "away",
    "back",
    "passwd",
    "h",
    "?",
    "quit",
    "exit",
    "q",
    "who",
    "names",
    "clear",
    "urls",
    "links",
    "reconnect",
    "search",
    "find",
    "me",
    "join",
    "j",
    "part",
    "leave",
    "msg",
    "query",
    "m",
    "invite",
    "topic",
    "kick",
    "ban",
    "unban",
    "mute",
    "role",
    "privacy",
    "create",
    "rooms",
    "list",
    "ignore",
    "unignore",
    "upload",
    "download",
];

/// The commands, for `/help`.
pub const HELP: &str = "\
commands:
  /help                     this text
  /me ACTION                an action, shown as `* you ACTION`
  /msg USER [TEXT]          open the direct conversation with USER (and send TEXT)
  /who                      who is online in this room
  /join #ROOM               join a room (public, or one you are invited to)
  /part [#ROOM]             leave this room (or #ROOM); in a direct conversation, close it
  /create #ROOM [private]   make a room (public unless private); you own it
  /rooms                    list the public rooms and yours, with members and topic
  /topic [TEXT]             show this room's topic, or set it (owners; -delete clears it)
  /invite USER              invite USER into this room (moderators, owners)
  /kick USER [REASON]       put USER out of this room (moderators, owners)
  /mute USER MINUTES [WHY]  keep USER from writing here for a while; 0 lifts it
  /ban USER [REASON]        put USER out of this room and keep them out
  /unban USER               let USER back in
  /role USER ROLE           make USER owner, moderator or member (owners)
  /privacy public|private   who may join this room (owners)
  /away [MESSAGE]           be away (shown beside your name in /who and the people list)
  /back                     no longer away
  /passwd                   change your password (asked without echo; Esc cancels)
  /ignore [USER]            hide USER's messages (kept in the cache); alone: who is ignored
  /unignore USER            show USER's messages again
  /upload PATH              share a file here (Tab completes the path; Esc cancels)
  /download [N|HASH]        save a shared file: the one a search shows, else the newest
                            here (N: the Nth newest; HASH: its sha256 or a start of it) into
                            $XDG_DOWNLOAD_DIR, else ~/Downloads, else ~ (never over a file)
  /search TEXT              find TEXT in this room's loaded messages (Ctrl+P/N, Esc ends)
  /urls                     list the URLs in this room's loaded messages, newest last
  /clear                    clear the pane (scroll up to see the messages again)
  /reconnect                log in again now
  /quit                     leave (also Ctrl+C, or Ctrl+D on an empty line)
  //TEXT                    send TEXT starting with a single /
keys:
  Enter send · Alt+Enter or Esc Enter new line · Up/Down recall sent lines · Tab complete
  Esc with an empty line: cancel the newest transfer · Enter on an empty line during a search
  downloads the file line it shows
  Alt+1…9 room 1 to 9 · Ctrl+N/Ctrl+P next/previous room (match, while searching)
  PgUp/PgDn or wheel scroll · Home/End oldest/newest · F2 people · F3 rooms · Ctrl+L redraw
  Ctrl+A/E line start/end · Ctrl+W word · Ctrl+U/K delete to line start/end";

/// The first word of `s` and the rest, its leading blanks removed.
fn word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// A typed `/command args` split into the command's name (lower case, no slash) and its
/// arguments (leading blanks removed); `None` for a message (`//` included).
pub fn name_and_args(line: &str) -> Option<(String, &str)> {
    if line.starts_with("//") {
        return None;
    }
    let command = line.strip_prefix('/')?;
    let (name, args) = match command.find(char::is_whitespace) {
        Some(i) => (&command[..i], command[i..].trim_start_matches([' ', '\t'])),
        None => (command, ""),
    };
    Some((name.to_ascii_lowercase(), args))
}

/// Parses what was typed (already known not to be blank).
pub fn parse(line: &str) -> Input {
    if let Some(rest) = line.strip_prefix("//") {
        return Input::Message(format!("/{rest}"));
    }
    let Some(command) = line.strip_prefix('/') else {
        return Input::Message(line.to_owned());
    };
    let (name, args) = match command.find(char::is_whitespace) {
        Some(i) => (&command[..i], command[i..].trim_start_matches([' ', '\t'])),
        None => (command, ""),
    };
    let (first, rest) = word(args);
    let rest_trimmed = rest.trim().to_owned();
    match name.to_ascii_lowercase().as_str() {
        "help" | "h" | "?" => Input::Help,
        "quit" | "exit" | "q" => Input::Quit,
        "who" | "names" => Input::Who,
        "clear" => Input::Clear,
        "urls" | "links" if args.trim().is_empty() => Input::Urls,
        "urls" | "links" => Input::Usage("/urls"),
        "reconnect" => Input::Reconnect,
        "search" | "find" => Input::Search(args.trim().to_owned()),
        "me" if args.trim().is_empty() => Input::Usage("/me ACTION, e.g. /me waves"),
        "me" => Input::Message(format!("{ME_PREFIX}{args}")),
        "join" | "j" if first.is_empty() || !rest_trimmed.is_empty() => {
            Input::Usage("/join #ROOM, e.g. /join #dev")
        }
        "join" | "j" => Input::Join(first.to_owned()),
        "part" | "leave" if !rest_trimmed.is_empty() => Input::Usage("/part [#ROOM]"),
        "part" | "leave" => Input::Part((!first.is_empty()).then(|| first.to_owned())),
        "msg" | "query" | "m" if first.is_empty() => {
            Input::Usage("/msg USER [TEXT], e.g. /msg bob lunch?")
        }
        "msg" | "query" | "m" => Input::Msg {
            user: first.to_owned(),
            text: rest.trim_end_matches(['\r', '\n']).to_owned(),
        },
        "invite" if first.is_empty() || !rest_trimmed.is_empty() => Input::Usage("/invite USER"),
        "invite" => Input::Invite(first.to_owned()),
        "topic" if args.trim().is_empty() => Input::Topic(None),
        "topic" if args.trim() == "-delete" => Input::Topic(Some(String::new())),
        "topic" => Input::Topic(Some(args.trim().to_owned())),
        "kick" if first.is_empty() => Input::Usage("/kick USER [REASON]"),
        "kick" => Input::Kick {
            user: first.to_owned(),
            reason: rest_trimmed,
        },
        "ban" if first.is_empty() => Input::Usage("/ban USER [REASON]"),
        "ban" => Input::Ban {
            user: first.to_owned(),
            reason: rest_trimmed,
        },
        "unban" if first.is_empty() || !rest_trimmed.is_empty() => Input::Usage("/unban USER"),
        "unban" => Input::Unban(first.to_owned()),
        "mute" => {
            let (minutes, reason) = word(rest);
            match minutes.parse::<u32>() {
                Ok(minutes) if !first.is_empty() => Input::Mute {
                    user: first.to_owned(),
                    minutes,
                    reason: reason.trim().to_owned(),
                },
                _ => Input::Usage(
                    "/mute USER MINUTES [REASON], e.g. /mute bob 10 calm down (0 lifts it)",
                ),
            }
        }
        "role" => {
            let (role, extra) = word(rest);
            match role.to_ascii_lowercase().parse::<RoomRole>() {
                Ok(role) if !first.is_empty() && extra.trim().is_empty() => Input::Role {
                    user: first.to_owned(),
                    role,
                },
                _ => Input::Usage("/role USER owner|moderator|member"),
            }
        }
        "privacy" => match first.to_ascii_lowercase().parse::<Visibility>() {
            Ok(visibility) if rest_trimmed.is_empty() => Input::Privacy(visibility),
            _ => Input::Usage("/privacy public|private"),
        },
        "create" => {
            let visibility = match rest_trimmed.to_ascii_lowercase().as_str() {
                "" | "public" => Some(Visibility::Public),
                "private" => Some(Visibility::Private),
                _ => None,
            };
            match visibility {
                Some(visibility) if !first.is_empty() => Input::Create {
                    room: first.to_owned(),
                    visibility,
                },
                _ => Input::Usage("/create #ROOM [private], e.g. /create #dev"),
            }
        }
        "ignore" if !rest_trimmed.is_empty() => Input::Usage("/ignore [USER]"),
        "ignore" => Input::Ignore((!first.is_empty()).then(|| first.to_owned())),
        "unignore" if first.is_empty() || !rest_trimmed.is_empty() => {
            Input::Usage("/unignore USER")
        }
        "unignore" => Input::Unignore(first.to_owned()),
        "upload" if args.trim().is_empty() => Input::Usage("/upload PATH (Tab completes it)"),
        "upload" => Input::Upload(args.trim_end().to_owned()),
        "download" if !rest_trimmed.is_empty() => Input::Usage("/download [N|HASH]"),
        "download" => Input::Download((!first.is_empty()).then(|| first.to_owned())),
        "rooms" | "list" if args.trim().is_empty() => Input::Rooms,
        "rooms" | "list" => Input::Usage("/rooms"),
        "away" => Input::Away(args.trim().to_owned()),
        "back" if args.trim().is_empty() => Input::Back,
        "back" => Input::Usage("/back"),
        "passwd" | "password" if args.trim().is_empty() => Input::Passwd,
        // A password typed on the command line would be echoed and kept in the input history.
        "passwd" | "password" => {
            Input::Usage("/passwd alone: the passwords are asked for next, without echo")
        }
        _ => Input::Unknown(format!("/{name}")),
    }
}

/// The commands `prefix` (a `/` and the start of a name) begins, in `/help`'s order.
pub fn commands_starting(prefix: &str) -> Vec<&'static str> {
    let lower = prefix.to_ascii_lowercase();
    COMMANDS
        .iter()
        .copied()
        .filter(|c| c.starts_with(&lower))
        .collect()
}

/// Where the path being typed after `/upload ` starts in `line` (the whole rest of the line is
/// the path: names may hold spaces), when `line` is one.
pub fn upload_path_start(line: &str) -> Option<usize> {
    let rest = line.strip_prefix('/')?;
    let end = rest.find([' ', '\t'])?;
    if !rest[..end].eq_ignore_ascii_case("upload") {
        return None;
    }
    let after = &rest[end..];
    let blanks = after.len() - after.trim_start_matches([' ', '\t']).len();
    Some(1 + end + blanks)
}

/// Whether the word being typed after `line`'s command is a room name (`/join`, `/part`): then
/// Tab completes rooms, not people.
pub fn takes_room(line: &str) -> bool {
    let (command, _) = word(line);
    matches!(
        command.to_ascii_lowercase().as_str(),
        "/join" | "/j" | "/part" | "/leave" | "/create"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn away_back_and_passwd() {
        assert_eq!(parse("/away"), Input::Away(String::new()));
        assert_eq!(parse("/away  at lunch "), Input::Away("at lunch".into()));
        assert_eq!(parse("/back"), Input::Back);
        assert!(matches!(parse("/back now"), Input::Usage(_)));
        assert_eq!(parse("/passwd"), Input::Passwd);
        assert!(matches!(parse("/passwd hunter2"), Input::Usage(_)));
    }

    #[test]
    fn messages_and_commands() {
        assert_eq!(parse("hello"), Input::Message("hello".into()));
        assert_eq!(
            parse(" /not a command"),
            Input::Message(" /not a command".into())
        );
        assert_eq!(parse("//etc/passwd"), Input::Message("/etc/passwd".into()));
        assert_eq!(parse("/me waves"), Input::Message("/me waves".into()));
        assert_eq!(parse("/ME  waves  "), Input::Message("/me waves  ".into()));
        assert!(matches!(parse("/me"), Input::Usage(_)));
        assert!(matches!(parse("/me   "), Input::Usage(_)));
        assert_eq!(parse("/quit"), Input::Quit);
        assert_eq!(parse("/who"), Input::Who);
        assert_eq!(parse("/help"), Input::Help);
        assert_eq!(parse("/clear"), Input::Clear);
        assert_eq!(parse("/URLS"), Input::Urls);
        assert!(matches!(parse("/urls now"), Input::Usage(_)));
        assert_eq!(parse("/reconnect"), Input::Reconnect);
        assert_eq!(
            parse("/search  two words "),
            Input::Search("two words".into())
        );
        assert_eq!(parse("/search"), Input::Search(String::new()));
        assert_eq!(
            parse("/frobnicate now"),
            Input::Unknown("/frobnicate".into())
        );
        assert_eq!(parse("/"), Input::Unknown("/".into()));
    }

    #[test]
    fn room_commands() {
        assert_eq!(parse("/join #dev"), Input::Join("#dev".into()));
        assert_eq!(parse("/JOIN dev "), Input::Join("dev".into()));
        assert!(matches!(parse("/join"), Input::Usage(_)));
        assert!(matches!(parse("/join #a #b"), Input::Usage(_)));
        assert_eq!(parse("/part"), Input::Part(None));
        assert_eq!(parse("/part #dev"), Input::Part(Some("#dev".into())));
        assert_eq!(
            parse("/msg bob  lunch at 12?"),
            Input::Msg {
                user: "bob".into(),
                text: "lunch at 12?".into()
            }
        );
        assert_eq!(
            parse("/msg bob"),
            Input::Msg {
                user: "bob".into(),
                text: String::new()
            }
        );
        assert!(matches!(parse("/msg"), Input::Usage(_)));
        assert_eq!(parse("/invite carol"), Input::Invite("carol".into()));
        assert!(matches!(parse("/invite"), Input::Usage(_)));
        assert_eq!(parse("/topic"), Input::Topic(None));
        assert_eq!(parse("/topic -delete"), Input::Topic(Some(String::new())));
        assert_eq!(
            parse("/topic ship it, friday"),
            Input::Topic(Some("ship it, friday".into()))
        );
        assert_eq!(
            parse("/kick mallory spam, again"),
            Input::Kick {
                user: "mallory".into(),
                reason: "spam, again".into()
            }
        );
        assert_eq!(
            parse("/kick mallory"),
            Input::Kick {
                user: "mallory".into(),
                reason: String::new()
            }
        );
        assert_eq!(
            parse("/mute bob 10 calm down"),
            Input::Mute {
                user: "bob".into(),
                minutes: 10,
                reason: "calm down".into()
            }
        );
        assert_eq!(
            parse("/mute bob 0"),
            Input::Mute {
                user: "bob".into(),
                minutes: 0,
                reason: String::new()
            }
        );
        assert!(matches!(parse("/mute bob"), Input::Usage(_)));
        assert!(matches!(parse("/mute bob ten"), Input::Usage(_)));
        assert!(matches!(parse("/mute bob -1"), Input::Usage(_)));
        assert_eq!(
            parse("/ban mallory spam"),
            Input::Ban {
                user: "mallory".into(),
                reason: "spam".into()
            }
        );
        assert_eq!(parse("/unban mallory"), Input::Unban("mallory".into()));
        assert_eq!(
            parse("/role bob Moderator"),
            Input::Role {
                user: "bob".into(),
                role: RoomRole::Moderator
            }
        );
        assert!(matches!(parse("/role bob boss"), Input::Usage(_)));
        assert_eq!(
            parse("/privacy private"),
            Input::Privacy(Visibility::Private)
        );
        assert!(matches!(parse("/privacy"), Input::Usage(_)));
        assert_eq!(
            parse("/create #dev"),
            Input::Create {
                room: "#dev".into(),
                visibility: Visibility::Public
            }
        );
        assert_eq!(
            parse("/create #ops private"),
            Input::Create {
                room: "#ops".into(),
                visibility: Visibility::Private
            }
        );
        assert!(matches!(parse("/create #ops secret"), Input::Usage(_)));
        assert!(matches!(parse("/create"), Input::Usage(_)));
        assert_eq!(parse("/rooms"), Input::Rooms);
        assert_eq!(parse("/ignore"), Input::Ignore(None));
        assert_eq!(parse("/IGNORE Bob"), Input::Ignore(Some("Bob".into())));
        assert!(matches!(parse("/ignore bob carol"), Input::Usage(_)));
        assert_eq!(parse("/unignore bob"), Input::Unignore("bob".into()));
        assert!(matches!(parse("/unignore"), Input::Usage(_)));
    }

    #[test]
    fn upload_and_download() {
        assert_eq!(
            parse("/upload  ~/my notes.txt "),
            Input::Upload("~/my notes.txt".into()),
            "the path is the rest of the line, inner spaces and all"
        );
        assert!(matches!(parse("/upload"), Input::Usage(_)));
        assert!(matches!(parse("/upload   "), Input::Usage(_)));
        assert_eq!(parse("/download"), Input::Download(None));
        assert_eq!(parse("/DOWNLOAD 2"), Input::Download(Some("2".into())));
        assert!(matches!(parse("/download 1 2"), Input::Usage(_)));
        assert_eq!(upload_path_start("/upload ~/a b"), Some(8));
        assert_eq!(upload_path_start("/UPLOAD \t x"), Some(10));
        assert_eq!(upload_path_start("/upload"), None);
        assert_eq!(upload_path_start("/uploads x"), None);
        assert_eq!(upload_path_start("upload x"), None);
    }

    #[test]
    fn tab_knows_every_command_and_help_lists_them() {
        assert_eq!(commands_starting("/jo"), ["/join"]);
        assert_eq!(
            commands_starting("/u"),
            ["/unban", "/upload", "/unignore", "/urls"]
        );
        assert_eq!(commands_starting("/do"), ["/download"]);
        assert_eq!(commands_starting("/M"), ["/me", "/msg", "/mute"]);
        assert!(commands_starting("/zz").is_empty());
        for command in COMMANDS {
            assert!(
                HELP.contains(&format!("  {command} ")),
                "{command} in /help"
            );
            assert!(
                !matches!(parse(command), Input::Unknown(_)),
                "{command} is parsed"
            );
        }
        for name in BUILTIN_NAMES {
            assert!(
                !matches!(parse(&format!("/{name} a b")), Input::Unknown(_)),
                "/{name} is built in"
            );
        }
        for command in COMMANDS {
            let bare = command.trim_start_matches('/');
            assert!(BUILTIN_NAMES.contains(&bare), "{command} is reserved");
        }
        assert_eq!(
            name_and_args("/Shout  hi there "),
            Some(("shout".into(), "hi there "))
        );
        assert_eq!(name_and_args("/shout"), Some(("shout".into(), "")));
        assert_eq!(name_and_args("//shout hi"), None);
        assert_eq!(name_and_args("shout"), None);
        assert!(takes_room("/join #d"));
        assert!(takes_room("/part "));
        assert!(!takes_room("/msg b"));
    }
}

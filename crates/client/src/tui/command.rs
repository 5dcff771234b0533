//! What a line typed in the input means: a message, or a `/command`.

use super::scrollback::ME_PREFIX;

/// A submitted input line, understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Send this text as a message.
    Message(String),
    /// `/help`.
    Help,
    /// `/quit` (or `/exit`).
    Quit,
    /// `/who`.
    Who,
    /// `/search TEXT`; empty ends the search.
    Search(String),
    /// `/clear`.
    Clear,
    /// `/reconnect`.
    Reconnect,
    /// A command that needs something after it (`/me` alone).
    Usage(&'static str),
    /// Not a command we know: never sent.
    Unknown(String),
}

/// The commands, for `/help`.
pub const HELP: &str = "\
commands:
  /help            this text
  /me ACTION       an action, shown as `* you ACTION`
  /who             who is online
  /search TEXT     find TEXT in the loaded messages (Ctrl+P older, Ctrl+N newer, Esc ends)
  /clear           clear the pane (scroll up to see the messages again)
  /reconnect       log in again now
  /quit            leave (also Ctrl+C, or Ctrl+D on an empty line)
  //TEXT           send TEXT starting with a single /
keys:
  Enter send · Alt+Enter or Esc Enter new line · Up/Down recall sent lines · Tab names
  PgUp/PgDn or wheel scroll · Home/End oldest/newest · F2 people pane · Ctrl+L redraw
  Ctrl+A/E line start/end · Ctrl+W word · Ctrl+U/K delete to line start/end";

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
    match name.to_ascii_lowercase().as_str() {
        "help" | "h" | "?" => Input::Help,
        "quit" | "exit" | "q" => Input::Quit,
        "who" | "names" => Input::Who,
        "clear" => Input::Clear,
        "reconnect" => Input::Reconnect,
        "search" | "find" => Input::Search(args.trim().to_owned()),
        "me" if args.trim().is_empty() => Input::Usage("/me ACTION, e.g. /me waves"),
        "me" => Input::Message(format!("{ME_PREFIX}{args}")),
        _ => Input::Unknown(format!("/{name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

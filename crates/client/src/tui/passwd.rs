//! `/passwd`: the current password, then the new one twice, typed in the input line without
//! echo (a mask as long whatever was typed, as in the login form). Nothing typed here goes to
//! the input's history or the scrollback.

use gc_client_core::Password;
use gc_protocol::limits::check_new_password;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Which password the prompt asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Current,
    New,
    Again,
}

/// The prompt of `/passwd`, while it asks.
#[derive(Debug)]
pub struct PasswdPrompt {
    step: Step,
    current: Password,
    new: Password,
    field: String,
}

/// What a key did to the prompt.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still asking.
    Asking,
    /// All three typed, the new one twice alike and long enough: change it.
    Done {
        /// The password now.
        current: Password,
        /// The one to have.
        new: Password,
    },
    /// Esc: nothing changes.
    Cancelled,
    /// The new password is refused (too short, or the two differ): asked again from the new one.
    Again(String),
}

impl Default for PasswdPrompt {
    fn default() -> Self {
        Self {
            step: Step::Current,
            current: Password::default(),
            new: Password::default(),
            field: String::new(),
        }
    }
}

impl PasswdPrompt {
    /// The label before the field.
    pub fn label(&self) -> &'static str {
        match self.step {
            Step::Current => "current password: ",
            Step::New => "new password: ",
            Step::Again => "new password again: ",
        }
    }

    /// Whether something is typed in the field (the mask shows then).
    pub fn typed(&self) -> bool {
        !self.field.is_empty()
    }

    /// A paste: its first line, into the field.
    pub fn paste(&mut self, text: &str) {
        let line = text.split(['\r', '\n']).next().unwrap_or_default();
        self.field.push_str(line);
    }

    /// Takes one key.
    pub fn key(&mut self, key: KeyEvent) -> Outcome {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Esc => return Outcome::Cancelled,
            KeyCode::Char('u') if ctrl => self.field.clear(),
            KeyCode::Char(c) if !ctrl => self.field.push(c),
            KeyCode::Backspace => {
                self.field.pop();
            }
            KeyCode::Enter => return self.enter(),
            _ => {}
        }
        Outcome::Asking
    }

    fn enter(&mut self) -> Outcome {
        let typed = Password::new(std::mem::take(&mut self.field));
        match self.step {
            Step::Current => {
                self.current = typed;
                self.step = Step::New;
            }
            Step::New => {
                if let Err(e) = check_new_password(typed.expose()) {
                    return Outcome::Again(e);
                }
                self.new = typed;
                self.step = Step::Again;
            }
            Step::Again => {
                if typed != self.new {
                    self.step = Step::New;
                    self.new = Password::default();
                    return Outcome::Again("the two new passwords differ".into());
                }
                return Outcome::Done {
                    current: std::mem::take(&mut self.current),
                    new: std::mem::take(&mut self.new),
                };
            }
        }
        Outcome::Asking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(prompt: &mut PasswdPrompt, text: &str) -> Outcome {
        for c in text.chars() {
            assert_eq!(
                prompt.key(KeyEvent::from(KeyCode::Char(c))),
                Outcome::Asking
            );
        }
        prompt.key(KeyEvent::from(KeyCode::Enter))
    }

    #[test]
    fn asks_the_current_password_then_the_new_one_twice() {
        let mut p = PasswdPrompt::default();
        assert_eq!(p.label(), "current password: ");
        assert_eq!(typed(&mut p, "old-password"), Outcome::Asking);
        assert_eq!(p.label(), "new password: ");
        assert_eq!(
            typed(&mut p, "short"),
            Outcome::Again("password too short: at least 8 characters".into())
        );
        assert_eq!(typed(&mut p, "new-password-1"), Outcome::Asking);
        assert_eq!(p.label(), "new password again: ");
        assert_eq!(
            typed(&mut p, "new-password-2"),
            Outcome::Again("the two new passwords differ".into())
        );
        assert_eq!(p.label(), "new password: ");
        assert_eq!(typed(&mut p, "new-password-1"), Outcome::Asking);
        assert_eq!(
            typed(&mut p, "new-password-1"),
            Outcome::Done {
                current: Password::new("old-password"),
                new: Password::new("new-password-1"),
            }
        );
    }

    #[test]
    fn esc_cancels_and_editing_keys_edit() {
        let mut p = PasswdPrompt::default();
        p.key(KeyEvent::from(KeyCode::Char('x')));
        assert!(p.typed());
        p.key(KeyEvent::from(KeyCode::Backspace));
        assert!(!p.typed());
        p.paste("pasted\nsecond line");
        p.key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert!(!p.typed());
        assert_eq!(p.key(KeyEvent::from(KeyCode::Esc)), Outcome::Cancelled);
    }
}

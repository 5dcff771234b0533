//! The login form: its fields, what each key and paste does to them, and what it shows when a
//! login fails. Like the [`super::app::App`] it does no I/O: a key that needs the client (log in,
//! cancel) or ends the program comes back as a [`Request`] for the app to turn into actions.

use gc_protocol::limits::{MIN_PASSWORD_CHARS, check_new_password};
use gc_protocol::types::is_valid_username;
use gc_protocol::{ErrorCode, Registration};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::input::InputBox;
use super::scrollback::Level;
use gc_client_core::ClientError;
use gc_client_core::config::Password;
use gc_client_core::error_chain;
use gc_client_core::trust::FirstContact;

/// A field of the login form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Field {
    /// Username.
    #[default]
    User,
    /// Password (hidden).
    Password,
    /// Password again, to create an account (hidden).
    Repeat,
}

/// The login form.
#[derive(Debug, Default)]
pub struct LoginForm {
    /// Username.
    pub user: InputBox,
    /// Password.
    pub password: InputBox,
    /// Password again (registration).
    pub repeat: InputBox,
    /// The field being edited.
    focus: Field,
    /// Create the account (the repeat field is shown).
    pub register: bool,
    /// A client is logging in.
    pub busy: bool,
    /// A line for the user: why the last attempt failed, or what is happening.
    pub message: Option<(Level, String)>,
    /// First contact: the certificate the server presents, waiting for the user to trust it
    /// (`y`) or not (`n`, Esc). Every other key waits.
    pub trust: Option<FirstContact>,
}

/// What a key on the form asks of the app.
#[derive(Debug)]
pub enum Request {
    /// Start a client that logs in (and first creates the account, if `register`).
    LogIn {
        /// The account, trimmed.
        user: String,
        /// Its password.
        password: Password,
        /// Create the account first.
        register: bool,
    },
    /// Trust this server certificate from now on, and go on logging in.
    Trust(FirstContact),
    /// Stop the client that is logging in (Esc while busy, or a certificate not trusted).
    Cancel,
    /// Leave the program (Esc on the form).
    Quit,
}

impl LoginForm {
    /// The field being edited.
    pub fn focused(&self) -> Field {
        self.focus
    }

    fn field_mut(&mut self) -> &mut InputBox {
        match self.focus {
            Field::User => &mut self.user,
            Field::Password => &mut self.password,
            Field::Repeat => &mut self.repeat,
        }
    }

    fn fields(&self) -> &'static [Field] {
        if self.register {
            &[Field::User, Field::Password, Field::Repeat]
        } else {
            &[Field::User, Field::Password]
        }
    }

    fn move_focus(&mut self, forward: bool) {
        let fields = self.fields();
        let at = fields.iter().position(|f| *f == self.focus).unwrap_or(0);
        let next = if forward {
            (at + 1) % fields.len()
        } else {
            (at + fields.len() - 1) % fields.len()
        };
        self.focus = fields[next];
    }

    /// Fills in the remembered or given username (the password is then the field to type) and
    /// whether to create the account.
    pub fn prefill(&mut self, user: Option<&str>, register: bool) {
        if let Some(user) = user {
            self.user.set(user);
            self.focus = Field::Password;
        }
        self.register = register;
    }

    /// A login started without the form (the password came from a file or the environment).
    pub fn start(&mut self, user: &str, register: bool) {
        self.user.set(user);
        self.register = register;
        self.busy = true;
    }

    /// The client for a login could not even be started: `why`.
    pub fn start_failed(&mut self, why: String) {
        self.busy = false;
        self.message = Some((Level::Error, why));
    }

    /// The server was seen for the first time: show what it presents and ask.
    pub fn ask_trust(&mut self, contact: FirstContact) {
        self.busy = false;
        self.message = None;
        self.trust = Some(contact);
    }

    /// What the client reports while logging in is shown on the form.
    pub fn progress(&mut self, level: Level, text: &str) {
        if self.busy {
            self.message = Some((level, text.to_owned()));
        }
    }

    /// The client logging in as `user` gave up with `error`: say why and put the focus where the
    /// fix goes. A server that does not know `user` but takes registrations (`registration`) is
    /// offered the account.
    pub fn client_failed(
        &mut self,
        error: &ClientError,
        user: &str,
        registration: Option<Registration>,
    ) {
        self.busy = false;
        let text = error_chain(error);
        match error.code() {
            Some(ErrorCode::UnknownUser) if registration == Some(Registration::Open) => {
                self.register = true;
                self.focus = Field::Repeat;
                self.repeat.take();
                self.message = Some((
                    Level::Info,
                    format!(
                        "There is no account \"{user}\" on this server yet. Type the \
                         password again and press Enter to create it (Esc: back)."
                    ),
                ));
            }
            Some(ErrorCode::UnknownUser) => {
                self.focus = Field::User;
                self.message = Some((
                    Level::Error,
                    format!(
                        "There is no account \"{user}\" and this server does not take \
                         registrations: ask its operator for one."
                    ),
                ));
            }
            Some(ErrorCode::Auth) => {
                self.focus = Field::Password;
                self.password.take();
                // A server that does not tell which names exist answers a name without an
                // account like a wrong password: say how to make the account.
                let text = if registration == Some(Registration::Open) && !self.register {
                    format!("{text}. If this is a new account, press Ctrl+R to create it.")
                } else {
                    text
                };
                self.message = Some((Level::Error, text));
            }
            _ => self.message = Some((Level::Error, text)),
        }
    }

    /// A paste: its first line goes into the field, without its line end, be it LF, CR LF or
    /// the CR terminals paste for one (nothing while logging in).
    pub fn paste(&mut self, text: &str) {
        if !self.busy {
            let line = text.split(['\n', '\r']).next().unwrap_or_default();
            self.field_mut().insert(line);
        }
    }

    /// A key press (Ctrl+C, Ctrl+D and Ctrl+L are the app's, before this).
    pub fn key(&mut self, key: KeyEvent) -> Option<Request> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if self.trust.is_some() {
            return match key.code {
                KeyCode::Char('y' | 'Y') => {
                    self.busy = true;
                    self.trust.take().map(Request::Trust)
                }
                KeyCode::Char('n' | 'N') | KeyCode::Esc => {
                    self.trust = None;
                    self.message = Some((
                        Level::Warning,
                        "Not trusted: not logging in. Check the fingerprint with the server's \
                         operator."
                            .into(),
                    ));
                    Some(Request::Cancel)
                }
                _ => None,
            };
        }
        if self.busy {
            if key.code == KeyCode::Esc {
                self.busy = false;
                self.message = Some((Level::Info, "Cancelled.".into()));
                return Some(Request::Cancel);
            }
            return None;
        }
        match key.code {
            KeyCode::Esc if self.register => {
                self.register = false;
                self.repeat.take();
                self.focus = Field::User;
                self.message = None;
            }
            KeyCode::Esc => return Some(Request::Quit),
            KeyCode::Tab | KeyCode::Down => self.move_focus(true),
            KeyCode::BackTab | KeyCode::Up => self.move_focus(false),
            KeyCode::Char('r') if ctrl => {
                self.register = !self.register;
                self.message = None;
                if !self.register && self.focus == Field::Repeat {
                    self.focus = Field::Password;
                }
            }
            KeyCode::Enter => {
                let last = *self.fields().last().unwrap_or(&Field::Password);
                // Enter on the last field submits; so does Enter on the username when the
                // password is already there (logging in again after a refusal).
                let submit = self.focus == last
                    || (self.focus == Field::User && !self.register && !self.password.is_empty());
                if submit {
                    return self.submit();
                }
                self.move_focus(true);
            }
            _ => self.field_mut().edit_key(key),
        }
        None
    }

    /// Checks the fields: a login to start, or `None` with the problem shown and the focus on it.
    fn submit(&mut self) -> Option<Request> {
        let user = self.user.text().trim().to_owned();
        let problem = if !is_valid_username(&user) {
            self.focus = Field::User;
            Some(if user.is_empty() {
                "Type your username.".to_owned()
            } else {
                "A username is 1 to 32 characters of A-Z a-z 0-9 _ . -".to_owned()
            })
        } else if self.password.is_empty() {
            self.focus = Field::Password;
            Some("Type your password.".to_owned())
        } else if self.register && self.repeat.text() != self.password.text() {
            self.focus = Field::Repeat;
            self.repeat.take();
            Some("The two passwords differ; type it again.".to_owned())
        } else if self.register && check_new_password(self.password.text()).is_err() {
            // Before anything is sent: the server never sees the password, so it cannot.
            self.focus = Field::Password;
            self.password.take();
            self.repeat.take();
            Some(format!(
                "Password too short: at least {MIN_PASSWORD_CHARS} characters for a new \
                 account; choose a longer one."
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            self.message = Some((Level::Error, problem));
            return None;
        }
        self.busy = true;
        self.message = None;
        Some(Request::LogIn {
            user,
            password: Password::new(self.password.text()),
            register: self.register,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn type_str(form: &mut LoginForm, s: &str) {
        for c in s.chars() {
            assert!(form.key(key(KeyCode::Char(c))).is_none());
        }
    }

    #[test]
    fn problems_keep_the_form_and_move_the_focus_to_them() {
        let mut form = LoginForm::default();
        assert!(form.key(key(KeyCode::Tab)).is_none());
        assert!(form.key(key(KeyCode::Enter)).is_none());
        assert_eq!(form.focused(), Field::User);
        assert_eq!(
            form.message,
            Some((Level::Error, "Type your username.".into()))
        );
        type_str(&mut form, "no spaces");
        form.key(key(KeyCode::Tab));
        type_str(&mut form, "correct-horse-9");
        assert!(form.key(key(KeyCode::Enter)).is_none());
        assert_eq!(form.focused(), Field::User);
        assert!(!form.busy);
    }

    #[test]
    fn a_failed_login_on_an_open_server_says_how_to_create_the_account() {
        let refused = ClientError::Refused {
            during: "the login",
            code: ErrorCode::Auth,
            text: gc_protocol::texts::login_failed("carol"),
        };
        let mut form = LoginForm::default();
        type_str(&mut form, "carol");
        form.client_failed(&refused, "carol", Some(Registration::Open));
        let (level, text) = form.message.clone().expect("a message");
        assert_eq!(level, Level::Error);
        assert!(text.contains("or no account by that name"), "{text}");
        assert!(text.ends_with("press Ctrl+R to create it."), "{text}");
        assert_eq!(form.focused(), Field::Password);
        // A closed server: nothing to create.
        form.client_failed(&refused, "carol", Some(Registration::Closed));
        let (_, text) = form.message.clone().expect("a message");
        assert!(!text.contains("Ctrl+R"), "{text}");
    }

    #[test]
    fn enter_on_the_username_submits_when_the_password_is_there() {
        let mut form = LoginForm::default();
        form.prefill(Some("bob"), false);
        type_str(&mut form, "correct-horse-9");
        form.key(key(KeyCode::Up));
        assert_eq!(form.focused(), Field::User);
        let request = form.key(key(KeyCode::Enter));
        let Some(Request::LogIn {
            user,
            password,
            register: false,
        }) = request
        else {
            panic!("{request:?}");
        };
        assert_eq!(
            (user.as_str(), password.expose()),
            ("bob", "correct-horse-9")
        );
        assert!(form.busy);
        assert!(matches!(form.key(key(KeyCode::Esc)), Some(Request::Cancel)));
        assert!(!form.busy);
        assert!(matches!(form.key(key(KeyCode::Esc)), Some(Request::Quit)));
    }

    #[test]
    fn a_first_contact_waits_for_y_or_n() {
        let contact = FirstContact {
            addr: "127.0.0.1:10740".parse().unwrap(),
            fingerprint: gc_protocol::Fingerprint::of_der(b"cert"),
            name: "gc".into(),
        };
        let mut form = LoginForm::default();
        form.ask_trust(contact.clone());
        assert!(
            form.key(key(KeyCode::Enter)).is_none(),
            "Enter does not trust"
        );
        assert!(form.key(key(KeyCode::Char('x'))).is_none());
        assert!(form.trust.is_some());
        let Some(Request::Trust(trusted)) = form.key(key(KeyCode::Char('y'))) else {
            panic!("y trusts");
        };
        assert_eq!(trusted, contact);
        assert!(form.busy && form.trust.is_none());
        form.ask_trust(contact);
        assert!(matches!(form.key(key(KeyCode::Esc)), Some(Request::Cancel)));
        assert!(!form.busy && form.trust.is_none());
        assert!(
            form.message
                .as_ref()
                .is_some_and(|(_, m)| m.contains("Not trusted"))
        );
    }

    #[test]
    fn a_new_account_needs_a_password_of_8_characters() {
        let mut form = LoginForm::default();
        form.prefill(Some("carol"), true);
        type_str(&mut form, "seven-7");
        form.key(key(KeyCode::Tab));
        type_str(&mut form, "seven-7");
        assert!(form.key(key(KeyCode::Enter)).is_none(), "nothing is sent");
        assert!(!form.busy);
        assert_eq!(form.focused(), Field::Password);
        let (level, text) = form.message.clone().unwrap();
        assert_eq!(level, Level::Error);
        assert!(
            text.contains("Password too short: at least 8 characters"),
            "{text}"
        );
        assert!(form.password.is_empty() && form.repeat.is_empty());
        type_str(&mut form, "eight-88");
        form.key(key(KeyCode::Tab));
        type_str(&mut form, "eight-88");
        let request = form.key(key(KeyCode::Enter));
        assert!(
            matches!(request, Some(Request::LogIn { register: true, .. })),
            "{request:?}"
        );
    }

    #[test]
    fn an_existing_account_logs_in_with_a_shorter_password() {
        let mut form = LoginForm::default();
        form.prefill(Some("bob"), false);
        type_str(&mut form, "old");
        let request = form.key(key(KeyCode::Enter));
        assert!(
            matches!(
                request,
                Some(Request::LogIn {
                    register: false,
                    ..
                })
            ),
            "{request:?}"
        );
    }

    #[test]
    fn ctrl_r_switches_to_creating_an_account_and_esc_back() {
        let mut form = LoginForm::default();
        let ctrl_r = KeyEvent::new(KeyCode::Char('r'), KeyModifiers::CONTROL);
        assert!(form.key(ctrl_r).is_none());
        assert!(form.register);
        form.key(key(KeyCode::BackTab));
        assert_eq!(form.focused(), Field::Repeat, "three fields now");
        assert!(form.key(key(KeyCode::Esc)).is_none(), "back, not quit");
        assert!(!form.register);
        assert_eq!(form.focused(), Field::User);
    }

    #[test]
    fn a_paste_puts_its_first_line_in_the_field_whatever_ends_it() {
        // tmux and other terminals paste a line end as CR: "pw\r" must not put a line end, or
        // the text of a second line, into the password.
        for pasted in [
            "secret-pw\r",
            "secret-pw\n",
            "secret-pw\r\n",
            "secret-pw\rmore",
            "secret-pw",
        ] {
            let mut form = LoginForm::default();
            form.prefill(Some("bob"), false);
            form.paste(pasted);
            assert_eq!(form.password.text(), "secret-pw", "{pasted:?}");
        }
    }
}

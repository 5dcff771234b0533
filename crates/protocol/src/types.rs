//! Value types shared by the wire format and the store: timestamps, usernames, client-msg-ids,
//! session tokens, rooms and records.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::error::FieldError;
use crate::limits::{
    CLIENT_MSG_ID_MAX, CLIENT_MSG_ID_MIN, GENERAL_ROOM, MAX_NUMBER_DIGITS, RESERVED_USERNAME,
    ROOM_NAME_MAX, SESSION_TOKEN_LEN, USERNAME_MAX, USERNAME_MIN,
};

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Written as seconds with up to six decimals, trailing zeros dropped (`1795733296.088305`,
/// `1640995200.123`, `1640995200`), as the original prototype stored them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    micros: u64,
}

impl Timestamp {
    /// The largest timestamp whose text form still parses (seconds fit in `u64` micros).
    pub const MAX: Timestamp = Timestamp { micros: u64::MAX };

    /// A timestamp from microseconds since the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Self { micros }
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.micros
    }

    /// Whole seconds since the epoch.
    pub const fn as_secs(self) -> u64 {
        self.micros / 1_000_000
    }

    /// The current time from the system clock (UTC). A clock set before 1970 reads as the epoch.
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self { micros }
    }

    /// Parses `SECONDS[.FRACTION]`: seconds in canonical decimal (no sign, no leading zeros), an
    /// optional fraction of 1 to 6 digits.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        // A short field: a loop beats a search.
        let (secs, frac) = match text.bytes().position(|b| b == b'.') {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let secs = parse_u64(secs).map_err(|_| FieldError::Timestamp)?;
        let mut micros_frac = 0u64;
        if let Some(frac) = frac {
            if frac.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FieldError::Timestamp);
            }
            for b in frac.bytes() {
                micros_frac = micros_frac * 10 + u64::from(b - b'0');
            }
            micros_frac *= 10u64.pow(6 - frac.len() as u32);
        }
        secs.checked_mul(1_000_000)
            .and_then(|m| m.checked_add(micros_frac))
            .map(Self::from_micros)
            .ok_or(FieldError::Timestamp)
    }
}

impl Timestamp {
    /// The date and time in UTC as `YYYY-MM-DD HH:MM:SS[.ffffff]` (fraction only when non-zero),
    /// for logs and exports; screens show local time instead.
    pub fn utc_datetime(self) -> String {
        let secs = self.as_secs();
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(secs / 86_400);
        let mut s = format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        );
        let canonical = self.to_string();
        if let Some((_, frac)) = canonical.split_once('.') {
            s.push('.');
            s.push_str(frac);
        }
        s
    }
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's algorithm, proleptic Gregorian).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.micros / 1_000_000;
        let mut frac = self.micros % 1_000_000;
        if frac == 0 {
            return write!(f, "{secs}");
        }
        let mut digits = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{secs}.{frac:0digits$}")
    }
}

/// Parses a canonical decimal `u64`: ASCII digits only, no sign, no leading zeros, at most 20 digits.
pub fn parse_u64(text: &str) -> Result<u64, FieldError> {
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NUMBER_DIGITS || (bytes.len() > 1 && bytes[0] == b'0')
    {
        return Err(FieldError::Number);
    }
    // One pass: each byte a digit, the value within u64.
    let mut value: u64 = 0;
    for &b in bytes {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return Err(FieldError::Number);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(digit)))
            .ok_or(FieldError::Number)?;
    }
    Ok(value)
}

/// Parses a canonical decimal that must fit in a `u32`.
pub fn parse_u32(text: &str) -> Result<u32, FieldError> {
    u32::try_from(parse_u64(text)?).map_err(|_| FieldError::Number)
}

/// Parses a canonical decimal that must fit in a `u16` (port numbers; 0 is refused).
pub fn parse_port(text: &str) -> Result<u16, FieldError> {
    match u16::try_from(parse_u64(text)?) {
        Ok(0) | Err(_) => Err(FieldError::Port),
        Ok(port) => Ok(port),
    }
}

/// A valid username: 1–32 characters from `A-Z a-z 0-9 _ . -`.
///
/// Usernames are unique without regard to case; [`Username::key`] gives the form to compare by.
/// `System` (in any case) is reserved for the server; [`Username::new`] accepts it so that stored
/// notices parse, and [`Username::is_reserved`] lets registration refuse it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Username(String);

impl Username {
    /// Validates and wraps a username.
    pub fn new(name: impl Into<String>) -> Result<Self, FieldError> {
        let name = name.into();
        if is_valid_username(&name) {
            Ok(Self(name))
        } else {
            Err(FieldError::Username)
        }
    }

    /// The username as registered.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The case-folded form used to compare usernames.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    /// Whether this is the name reserved for server notices.
    pub fn is_reserved(&self) -> bool {
        self.0.eq_ignore_ascii_case(RESERVED_USERNAME)
    }

    /// Unwraps the string.
    pub fn into_string(self) -> String {
        self.0.to_string()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Username {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Whether `name` is a syntactically valid username.
pub fn is_valid_username(name: &str) -> bool {
    (USERNAME_MIN..=USERNAME_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A client-chosen message id: 1–32 characters from `A-Z a-z 0-9 _ -`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientMsgId(String);

impl ClientMsgId {
    /// Validates and wraps a client-msg-id.
    pub fn new(id: impl Into<String>) -> Result<Self, FieldError> {
        let id = id.into();
        if is_valid_client_msg_id(&id) {
            Ok(Self(id))
        } else {
            Err(FieldError::ClientMsgId)
        }
    }

    /// A fresh random id (22 characters of URL-safe base64 from 16 random bytes).
    pub fn random() -> Result<Self, getrandom::Error> {
        use base64::Engine as _;
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `id` is a syntactically valid client-msg-id.
pub fn is_valid_client_msg_id(id: &str) -> bool {
    (CLIENT_MSG_ID_MIN..=CLIENT_MSG_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// A session token: 32 random bytes written as 64 lowercase hex digits.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionToken(String);

impl SessionToken {
    /// Validates and wraps a token.
    pub fn new(token: impl Into<String>) -> Result<Self, FieldError> {
        let token = token.into();
        let ok = token.len() == SESSION_TOKEN_LEN
            && token
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(token))
        } else {
            Err(FieldError::SessionToken)
        }
    }

    /// A fresh token from the operating system's random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; SESSION_TOKEN_LEN / 2];
        getrandom::fill(&mut bytes)?;
        let mut token = String::with_capacity(SESSION_TOKEN_LEN);
        for b in bytes {
            token.push(char::from(HEX[usize::from(b >> 4)]));
            token.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        Ok(Self(token))
    }

    /// The token as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Compares in constant time, so a token cannot be guessed byte by byte from timing.
    pub fn ct_eq(&self, other: &SessionToken) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for SessionToken {
    // Tokens are credentials: never print them whole in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken({}…)", &self.0[..8])
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ───────────────────────────── rooms ─────────────────────────────

/// A conversation: a room (`#dev`: `#` and 1–32 of `a-z 0-9 _ . -`) or a direct conversation
/// between two accounts (`@alice+bob`: their usernames in lower case, in order, joined by `+`,
/// which no username contains). One spelling per conversation, so names compare as strings.
///
/// Shared, not owned: every stored record and every delivery carries its room, so a clone is a
/// reference count, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Room(Arc<str>);

/// `#general`'s name, made once.
static GENERAL: LazyLock<Room> = LazyLock::new(|| Room(Arc::from(GENERAL_ROOM)));

/// What a [`Room`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// A room (`#…`), public or private.
    Room,
    /// A direct conversation between two accounts (`@…+…`).
    Direct,
}

impl Room {
    /// Validates and wraps a room or direct-conversation name.
    pub fn new(name: impl Into<String>) -> Result<Self, FieldError> {
        let name = name.into();
        if is_valid_room(&name) {
            Ok(Self(Arc::from(name)))
        } else {
            Err(FieldError::Room)
        }
    }

    /// `#general`, the room every account is in.
    pub fn general() -> Self {
        GENERAL.clone()
    }

    /// The direct conversation between `a` and `b` (in either order); an error if they are the
    /// same account.
    pub fn direct(a: &Username, b: &Username) -> Result<Self, FieldError> {
        let (a, b) = (a.key(), b.key());
        let (first, second) = match a.cmp(&b) {
            std::cmp::Ordering::Less => (a, b),
            std::cmp::Ordering::Greater => (b, a),
            std::cmp::Ordering::Equal => return Err(FieldError::Room),
        };
        Ok(Self(Arc::from(format!("@{first}+{second}"))))
    }

    /// The name as written on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is `#general`.
    pub fn is_general(&self) -> bool {
        &*self.0 == GENERAL_ROOM
    }

    /// A room or a direct conversation.
    pub fn kind(&self) -> RoomKind {
        if self.0.starts_with('@') {
            RoomKind::Direct
        } else {
            RoomKind::Room
        }
    }

    /// The two accounts of a direct conversation (their username keys, in order).
    pub fn direct_members(&self) -> Option<(&str, &str)> {
        self.0.strip_prefix('@')?.split_once('+')
    }

    /// Whether `user` is one of a direct conversation's two accounts (false for rooms).
    pub fn is_direct_member(&self, user: &Username) -> bool {
        let key = user.key();
        self.direct_members()
            .is_some_and(|(a, b)| a == key || b == key)
    }

    /// The name without a room's `#` (a direct conversation keeps its `@`): what a room's file is
    /// named after. Never empty, never contains `/`.
    pub fn file_stem(&self) -> &str {
        self.0.strip_prefix('#').unwrap_or(&self.0)
    }

    /// The room whose [`Room::file_stem`] is `stem` (`dev` → `#dev`, `@alice+bob` as is): how a
    /// room's file name is read back.
    pub fn from_file_stem(stem: &str) -> Result<Self, FieldError> {
        if stem.starts_with('@') {
            Self::new(stem)
        } else {
            Self::new(format!("#{stem}"))
        }
    }

    /// Unwraps the string.
    pub fn into_string(self) -> String {
        self.0.to_string()
    }
}

impl Default for Room {
    fn default() -> Self {
        Self::general()
    }
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Room {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for Room {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Whether `name` is a syntactically valid room or direct-conversation name.
pub fn is_valid_room(name: &str) -> bool {
    if let Some(rest) = name.strip_prefix('#') {
        (1..=ROOM_NAME_MAX).contains(&rest.len())
            && rest.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
            })
    } else if let Some(rest) = name.strip_prefix('@') {
        let Some((a, b)) = rest.split_once('+') else {
            return false;
        };
        let lower = |s: &str| is_valid_username(s) && !s.bytes().any(|c| c.is_ascii_uppercase());
        lower(a) && lower(b) && a < b
    } else {
        false
    }
}

/// Who may join a room: anyone (`public`) or the invited (`private`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Anyone may join.
    Public,
    /// Only the invited may join; the room is not listed to others and nothing tells them it
    /// exists.
    Private,
}

impl Visibility {
    /// The wire and file form: `public` or `private`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Visibility {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            _ => Err(FieldError::Visibility),
        }
    }
}

/// A member's role in a room, lowest first (so `>` compares rank). Server admins rank above
/// every room role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RoomRole {
    /// Reads and posts.
    Member,
    /// Also invites, kicks, mutes and bans members of lower rank.
    Moderator,
    /// Also sets the topic and privacy, and gives roles.
    Owner,
}

impl RoomRole {
    /// The wire and file form: `member`, `moderator` or `owner`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Owner => "owner",
        }
    }
}

impl fmt::Display for RoomRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RoomRole {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "member" => Ok(Self::Member),
            "moderator" => Ok(Self::Moderator),
            "owner" => Ok(Self::Owner),
            _ => Err(FieldError::RoomRole),
        }
    }
}

/// What a `Room` listing says a conversation is: a public or a private room, or a direct
/// conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListedKind {
    /// A room anyone may join.
    Public,
    /// A room only the invited may join.
    Private,
    /// A direct conversation between two accounts.
    Direct,
}

impl ListedKind {
    /// The wire form: `public`, `private` or `direct`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Direct => "direct",
        }
    }
}

impl From<Visibility> for ListedKind {
    fn from(visibility: Visibility) -> Self {
        match visibility {
            Visibility::Public => Self::Public,
            Visibility::Private => Self::Private,
        }
    }
}

impl fmt::Display for ListedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListedKind {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            "direct" => Ok(Self::Direct),
            _ => Err(FieldError::ListedKind),
        }
    }
}

/// What a `Room` listing says the asking session's account is in that room: one of the
/// [`RoomRole`]s, invited, or not in it (a public room listed to everyone). Unlike a member's
/// standing in the store, it has no `banned`: a ban shows as not being in the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListedRole {
    /// An owner of the room.
    Owner,
    /// A moderator of the room.
    Moderator,
    /// A member of the room.
    Member,
    /// Invited into a private room, not joined yet.
    Invited,
    /// Not in the room (`-` on the wire).
    Outside,
}

impl ListedRole {
    /// The wire form: `owner`, `moderator`, `member`, `invited` or `-`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Moderator => "moderator",
            Self::Member => "member",
            Self::Invited => "invited",
            Self::Outside => "-",
        }
    }

    /// The role, for a member of the room.
    pub fn role(self) -> Option<RoomRole> {
        match self {
            Self::Owner => Some(RoomRole::Owner),
            Self::Moderator => Some(RoomRole::Moderator),
            Self::Member => Some(RoomRole::Member),
            Self::Invited | Self::Outside => None,
        }
    }
}

impl From<RoomRole> for ListedRole {
    fn from(role: RoomRole) -> Self {
        match role {
            RoomRole::Owner => Self::Owner,
            RoomRole::Moderator => Self::Moderator,
            RoomRole::Member => Self::Member,
        }
    }
}

impl fmt::Display for ListedRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ListedRole {
    type Err = FieldError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "owner" => Ok(Self::Owner),
            "moderator" => Ok(Self::Moderator),
            "member" => Ok(Self::Member),
            "invited" => Ok(Self::Invited),
            "-" => Ok(Self::Outside),
            _ => Err(FieldError::ListedRole),
        }
    }
}

/// One stored message: what `database.db` holds per line and what `Rec` carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Server-assigned id, from 1, strictly increasing across all rooms.
    pub id: u64,
    /// The conversation it belongs to (a room's file holds only its own records, so the line
    /// format has no room field).
    pub room: Room,
    /// When the server stored it (UTC).
    pub timestamp: Timestamp,
    /// Who sent it, as the account was registered.
    pub username: Username,
    /// The message text (valid UTF-8, no NUL when it came through the server).
    pub body: String,
}

// ───────────────────────────── certificate fingerprints ─────────────────────────────

/// The SHA-256 of a certificate (its DER bytes), written `SHA256:` + unpadded base64 as OpenSSH
/// writes key fingerprints.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a certificate, from its DER bytes.
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SHA256:{}", B64_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Text that is not `SHA256:` followed by 43 characters of base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a certificate fingerprint (SHA256: and 43 characters of base64)")]
pub struct BadFingerprint;

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let b64 = text.strip_prefix("SHA256:").ok_or(BadFingerprint)?;
        // A padded form is accepted too (tools differ).
        let b64 = b64.trim_end_matches('=');
        let bytes = B64_NO_PAD.decode(b64).map_err(|_| BadFingerprint)?;
        bytes.try_into().map(Self).map_err(|_| BadFingerprint)
    }
}

// ───────────────────────────── file content ─────────────────────────────

/// The SHA-256 of a file's content, written as 64 lowercase hex digits (GC/5, docs/files.md): a
/// file's identity on the wire, in records and in the server's file store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// The hash of `content`.
    pub fn of(content: &[u8]) -> Self {
        Self(Sha256::digest(content).into())
    }

    /// A hash from its digest (for a caller that hashed a stream itself).
    pub const fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        for (i, b) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        // Only hex digits were written.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl FromStr for ContentHash {
    type Err = FieldError;

    /// Exactly 64 lowercase hex digits: one spelling per hash, so names and lines compare as
    /// text.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        fn digit(b: u8) -> Option<u8> {
            match b {
                b'0'..=b'9' => Some(b - b'0'),
                b'a'..=b'f' => Some(b - b'a' + 10),
                _ => None,
            }
        }
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return Err(FieldError::ContentHash);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(FieldError::ContentHash);
            };
            out[i] = (hi << 4) | lo;
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_text_forms() {
        let cases = [
            ("1640995200.123", 1_640_995_200_123_000),
            ("1795733296.088305", 1_795_733_296_088_305),
            ("0", 0),
            ("1640995200", 1_640_995_200_000_000),
            ("1.000001", 1_000_001),
        ];
        for (text, micros) in cases {
            let ts = Timestamp::parse(text).unwrap();
            assert_eq!(ts.as_micros(), micros, "{text}");
            assert_eq!(ts.to_string(), text);
        }
        // Trailing zeros parse, and are dropped when written.
        assert_eq!(Timestamp::parse("5.500").unwrap().to_string(), "5.5");
    }

    #[test]
    fn utc_datetimes() {
        let utc = |t: &str| Timestamp::parse(t).unwrap().utc_datetime();
        assert_eq!(utc("0"), "1970-01-01 00:00:00");
        assert_eq!(utc("1640995200.123"), "2022-01-01 00:00:00.123");
        assert_eq!(utc("951782400"), "2000-02-29 00:00:00");
        assert_eq!(utc("1795733296.088305"), "2026-11-26 22:48:16.088305");
        // The largest timestamp does not overflow.
        let _ = Timestamp::MAX.utc_datetime();
    }

    #[test]
    fn timestamp_rejects() {
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "01",
            "-1",
            "+1",
            "1.1234567",
            "1e9",
            "1,5",
            " 1",
            "1.5 ",
            "99999999999999999999",
            "1.a",
        ] {
            assert_eq!(Timestamp::parse(bad), Err(FieldError::Timestamp), "{bad:?}");
        }
    }

    #[test]
    fn numbers_are_canonical() {
        assert_eq!(parse_u64("0"), Ok(0));
        assert_eq!(parse_u64("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "-1",
            "+1",
            "1 ",
            "18446744073709551616",
            "1_0",
        ] {
            assert_eq!(parse_u64(bad), Err(FieldError::Number), "{bad:?}");
        }
        assert_eq!(parse_u32("4294967296"), Err(FieldError::Number));
        assert_eq!(parse_port("0"), Err(FieldError::Port));
        assert_eq!(parse_port("65536"), Err(FieldError::Port));
        assert_eq!(parse_port("12090"), Ok(12090));
    }

    #[test]
    fn usernames() {
        for ok in ["a", "Bob", "alice_1", "x.y-z", &"a".repeat(32)] {
            assert!(Username::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "é", "a;b", &"a".repeat(33), "tab\t"] {
            assert_eq!(Username::new(bad), Err(FieldError::Username), "{bad:?}");
        }
        assert!(Username::new("SYSTEM").unwrap().is_reserved());
        assert_eq!(Username::new("AlIcE").unwrap().key(), "alice");
    }

    #[test]
    fn client_msg_ids() {
        assert!(ClientMsgId::new("abc-DEF_123").is_ok());
        assert!(ClientMsgId::new("a.b").is_err());
        assert!(ClientMsgId::new("").is_err());
        assert!(ClientMsgId::new("x".repeat(33)).is_err());
        let r = ClientMsgId::random().unwrap();
        assert!(ClientMsgId::new(r.as_str()).is_ok());
    }

    #[test]
    fn session_tokens() {
        let t = SessionToken::random().unwrap();
        assert_eq!(t.as_str().len(), 64);
        assert!(SessionToken::new(t.as_str()).is_ok());
        assert!(SessionToken::new("A".repeat(64)).is_err());
        assert!(SessionToken::new("a".repeat(63)).is_err());
        let u = SessionToken::random().unwrap();
        assert!(t.ct_eq(&t.clone()));
        assert!(!t.ct_eq(&u));
        assert!(!format!("{t:?}").contains(t.as_str()));
    }

    #[test]
    fn room_names() {
        for ok in [
            "#general",
            "#a",
            "#dev-ops",
            "#x.y_z",
            "#0",
            &format!("#{}", "a".repeat(32)),
        ] {
            let room = Room::new(ok).unwrap();
            assert_eq!(room.kind(), RoomKind::Room, "{ok}");
            assert_eq!(room.file_stem(), &ok[1..]);
            assert_eq!(room.direct_members(), None);
        }
        for bad in [
            "",
            "#",
            "general",
            "#General",
            "#a b",
            "#a/b",
            "#é",
            "#a;b",
            "@",
            "@alice",
            "@alice+",
            "@+bob",
            "@bob+alice",
            "@alice+alice",
            "@Alice+bob",
            "@a+b+c",
            "#a+b",
            &format!("#{}", "a".repeat(33)),
        ] {
            assert_eq!(Room::new(bad), Err(FieldError::Room), "{bad:?}");
        }
        assert!(Room::general().is_general());
        assert_eq!(Room::default(), Room::general());
        assert!(!Room::new("#dev").unwrap().is_general());
    }

    #[test]
    fn direct_conversations_have_one_name() {
        let (a, b) = (
            Username::new("Bob").unwrap(),
            Username::new("alice").unwrap(),
        );
        let dm = Room::direct(&a, &b).unwrap();
        assert_eq!(dm, Room::direct(&b, &a).unwrap());
        assert_eq!(dm.as_str(), "@alice+bob");
        assert_eq!(dm.kind(), RoomKind::Direct);
        assert_eq!(dm.direct_members(), Some(("alice", "bob")));
        assert_eq!(dm.file_stem(), "@alice+bob");
        assert_eq!(Room::from_file_stem(dm.file_stem()), Ok(dm.clone()));
        assert_eq!(Room::from_file_stem("dev"), Room::new("#dev"));
        assert_eq!(Room::from_file_stem("Dev"), Err(FieldError::Room));
        assert!(dm.is_direct_member(&a) && dm.is_direct_member(&b));
        assert!(!dm.is_direct_member(&Username::new("carol").unwrap()));
        assert_eq!(Room::new("@alice+bob").unwrap(), dm);
        assert_eq!(
            Room::direct(&a, &Username::new("BOB").unwrap()),
            Err(FieldError::Room)
        );
    }

    #[test]
    fn visibility_and_roles_text_forms() {
        for v in [Visibility::Public, Visibility::Private] {
            assert_eq!(v.to_string().parse::<Visibility>(), Ok(v));
        }
        for r in [RoomRole::Member, RoomRole::Moderator, RoomRole::Owner] {
            assert_eq!(r.to_string().parse::<RoomRole>(), Ok(r));
        }
        assert!(RoomRole::Owner > RoomRole::Moderator && RoomRole::Moderator > RoomRole::Member);
        assert_eq!("Public".parse::<Visibility>(), Err(FieldError::Visibility));
        assert_eq!("admin".parse::<RoomRole>(), Err(FieldError::RoomRole));
    }

    #[test]
    fn listing_kinds_and_roles_text_forms() {
        for k in [ListedKind::Public, ListedKind::Private, ListedKind::Direct] {
            assert_eq!(k.to_string().parse::<ListedKind>(), Ok(k));
        }
        assert_eq!(ListedKind::from(Visibility::Private), ListedKind::Private);
        for s in [
            ListedRole::Owner,
            ListedRole::Moderator,
            ListedRole::Member,
            ListedRole::Invited,
            ListedRole::Outside,
        ] {
            assert_eq!(s.to_string().parse::<ListedRole>(), Ok(s));
        }
        for r in [RoomRole::Member, RoomRole::Moderator, RoomRole::Owner] {
            assert_eq!(ListedRole::from(r).role(), Some(r));
            assert_eq!(ListedRole::from(r).as_str(), r.as_str());
        }
        assert_eq!(ListedRole::Invited.role(), None);
        assert_eq!(ListedRole::Outside.as_str(), "-");
        assert_eq!("room".parse::<ListedKind>(), Err(FieldError::ListedKind));
        assert_eq!("banned".parse::<ListedRole>(), Err(FieldError::ListedRole));
    }
}

//! GC/3 on the server (docs/rooms.md): which rooms a session is shown, who may do what in a room,
//! and the room requests of the sending port. Each change is stored first in the room metadata
//! (`Rooms`), then announced by an ordinary record from `System` in the room, so every member
//! sees it once, in order with the messages; the request's `Thx` carries that record's id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use gc_protocol::{
    ClientMsgId, ErrorCode, ErrorFrame, Frame, ListedKind, ListedRole, Room, RoomKind, RoomRole,
    SendReply, SendRequest, Timestamp, Username, Visibility, texts,
};
use gc_store::{RoomSpan, Standing, StoreError};

use crate::config::RoomCreation;
use crate::listener::Stored;
use crate::state::{ServerState, Session};

/// The rooms `user` is shown: every room they are a member of with GC/3, `#general` alone
/// (unless banned there) for a GC/1 session.
pub(crate) fn visible(shared: &ServerState, user: &Username, gc3: bool) -> Vec<Room> {
    if gc3 {
        return shared.rooms.rooms_of(user);
    }
    let general = Room::general();
    if shared.rooms.is_member(&general, user) {
        vec![general]
    } else {
        Vec::new()
    }
}

/// One user's spans: per room, the `(after, until)` ids of the records owed.
type UserSpans = HashMap<Room, (u64, u64)>;

/// Which records of a room each user is owed, where that changed while this server runs (see
/// [`ServerState::spans`]), with a number raised by every change so a heartbeat thread can keep
/// its session's rooms until they change (as [`gc_store::Rooms::generation`]).
#[derive(Debug, Default)]
pub struct Spans {
    /// Per user key, per room: the `(after, until)` ids of the records owed.
    by_user: Mutex<HashMap<String, UserSpans>>,
    generation: AtomicU64,
}

impl Spans {
    /// Changes only when a span does; raised under the lock that guards the spans (read it
    /// before them, as [`gc_store::Rooms::generation`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Sets `user`'s span of `room` to what `f` makes of the current one (`None` if unset).
    fn set(&self, user: &Username, room: &Room, f: impl FnOnce(Option<(u64, u64)>) -> (u64, u64)) {
        let mut by_user = self.by_user.lock();
        let mine = by_user.entry(user.key()).or_default();
        let span = f(mine.get(room).copied());
        self.generation.fetch_add(1, Ordering::AcqRel);
        mine.insert(room.clone(), span);
    }
}

/// [`visible`] as the spans of records the session is owed: a room joined while this server
/// runs from the join on (what was said before is its history); a room the user left meanwhile
/// (GC/3) up to the notice that says so, so they learn they were kicked or banned.
///
/// It depends only on `shared.rooms` and `shared.spans`: the same answer while their
/// generations stay the same.
pub(crate) fn visible_from(shared: &ServerState, user: &Username, gc3: bool) -> Vec<RoomSpan> {
    let rooms = visible(shared, user, gc3);
    let spans = shared.spans.by_user.lock();
    let mine = spans.get(&user.key());
    let mut out: Vec<RoomSpan> = rooms
        .iter()
        .map(|room| {
            let (after, _) = mine
                .and_then(|m| m.get(room))
                .copied()
                .unwrap_or((0, u64::MAX));
            RoomSpan {
                room: room.clone(),
                after,
                until: u64::MAX,
            }
        })
        .collect();
    if gc3 && let Some(mine) = mine {
        out.extend(
            mine.iter()
                .filter(|(room, (_, until))| *until != u64::MAX && !rooms.contains(room))
                .map(|(room, &(after, until))| RoomSpan {
                    room: room.clone(),
                    after,
                    until,
                }),
        );
    }
    out
}

/// Notes that `user` joins `room` now.
fn joins(shared: &ServerState, room: &Room, user: &Username) {
    let now = shared.store.newest_id();
    shared.spans.set(user, room, |_| (now, u64::MAX));
}

/// Notes that `user` left `room` (or was put out of it) with the notice `id`: they are owed the
/// room up to it.
fn left(shared: &ServerState, room: &Room, user: &Username, id: u64) {
    shared
        .spans
        .set(user, room, |old| (old.map_or(0, |(after, _)| after), id));
}

/// How far someone's word goes in a room: server admins above owners above moderators above
/// members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Outside,
    Member,
    Moderator,
    Owner,
    Admin,
}

fn rank(shared: &ServerState, room: &Room, user: &Username) -> Rank {
    if shared.rooms.is_admin(user) {
        return Rank::Admin;
    }
    match shared.rooms.standing(room, user) {
        Some(Standing::Role(RoomRole::Owner)) => Rank::Owner,
        Some(Standing::Role(RoomRole::Moderator)) => Rank::Moderator,
        Some(Standing::Role(RoomRole::Member)) => Rank::Member,
        _ => Rank::Outside,
    }
}

/// A refusal, as the `Err` the asker gets.
pub(crate) struct Refusal(ErrorCode, String);

type Checked<T = ()> = Result<T, Refusal>;

impl Refusal {
    fn no_room(room: &Room) -> Self {
        Self(
            ErrorCode::NoRoom,
            format!("there is no room {room} you can see; /rooms lists them"),
        )
    }

    fn forbidden(text: impl Into<String>) -> Self {
        Self(ErrorCode::Forbidden, text.into())
    }

    /// The reply for `session`: a GC/1 client knows neither `no-room` nor `forbidden`, and can
    /// only have met them in `#general`: it is told `blocked`, with the same text.
    pub(crate) fn reply(self, session: &Session) -> SendReply {
        let code = match self.0 {
            ErrorCode::NoRoom | ErrorCode::Forbidden if !session.rooms => ErrorCode::Blocked,
            code => code,
        };
        SendReply::Err(ErrorFrame::new(code, self.1))
    }
}

fn internal(e: &StoreError) -> Refusal {
    tracing::error!("cannot change the rooms: {e}");
    Refusal(
        ErrorCode::Internal,
        "the server could not save the change; try again later".into(),
    )
}

/// Whether `session` may see `room` at all (private rooms and DMs of others do not exist for it).
fn seen(shared: &ServerState, session: &Session, room: &Room) -> Checked {
    if !session.rooms && !room.is_general() {
        return Err(Refusal(
            ErrorCode::Version,
            "this session logged in without rooms (GC/1); update gc-client to use them".into(),
        ));
    }
    match room.kind() {
        RoomKind::Direct if room.is_direct_member(&session.user) => Ok(()),
        RoomKind::Direct => Err(Refusal::no_room(room)),
        RoomKind::Room => match shared.rooms.get(room) {
            None => Err(Refusal::no_room(room)),
            Some(info)
                if info.visibility == Some(Visibility::Private)
                    && shared.rooms.standing(room, &session.user).is_none()
                    && !shared.rooms.is_admin(&session.user) =>
            {
                Err(Refusal::no_room(room))
            }
            Some(_) => Ok(()),
        },
    }
}

/// Whether `session` may read `room`'s history and presence: a member of it.
pub(crate) fn may_read(shared: &ServerState, session: &Session, room: &Room) -> Checked {
    seen(shared, session, room)?;
    if room.kind() == RoomKind::Direct || shared.rooms.is_member(room, &session.user) {
        return Ok(());
    }
    Err(outside(shared, room, &session.user))
}

/// Why someone who can see `room` is not in it.
fn outside(shared: &ServerState, room: &Room, user: &Username) -> Refusal {
    match shared.rooms.standing(room, user) {
        Some(Standing::Banned) => Refusal::forbidden(format!("you are banned from {room}")),
        Some(Standing::Invited) => Refusal::forbidden(format!(
            "you are invited to {room} but not in it yet: /join {room}"
        )),
        _ => Refusal::forbidden(format!("you are not in {room}: /join {room} first")),
    }
}

/// Whether `session` may post in `room` now: a member, not muted; a direct conversation with an
/// existing account is opened by its first message.
pub(crate) fn may_post(shared: &ServerState, session: &Session, room: &Room) -> Checked {
    seen(shared, session, room)?;
    let user = &session.user;
    if room.kind() == RoomKind::Direct {
        let Some((a, b)) = room.direct_members() else {
            return Err(Refusal::no_room(room));
        };
        let other = if a == user.key() { b } else { a };
        let Some(account) = shared.accounts.get(other).map_err(|e| internal(&e))? else {
            return Err(Refusal(
                ErrorCode::UnknownUser,
                format!("there is no account named {other} to write to"),
            ));
        };
        if shared.rooms.get(room).is_none() {
            shared
                .rooms
                .open_direct(user, &account.username, Timestamp::now())
                .map_err(|e| internal(&e))?;
            tracing::info!(%room, "direct conversation opened");
        }
        return Ok(());
    }
    if !shared.rooms.is_member(room, user) {
        return Err(outside(shared, room, user));
    }
    if let Some(until) = shared.rooms.muted_until(room, user) {
        let now = Timestamp::now();
        if until > now {
            let left = (until.as_micros() - now.as_micros()).div_ceil(1_000_000);
            return Err(Refusal::forbidden(format!(
                "you are muted in {room} for another {}",
                duration(left)
            )));
        }
    }
    Ok(())
}

/// `Who <room>`: the room's members who are online; returns them (`None`: refused).
pub(crate) fn who(
    shared: &ServerState,
    session: &Session,
    room: &Room,
    out: &mut Vec<u8>,
) -> Option<Vec<Username>> {
    if let Err(r) = may_read(shared, session, room) {
        r.reply(session).encode(out);
        return None;
    }
    let (presence_version, users) = shared.registry.online();
    let users: Vec<Username> = users
        .into_iter()
        .filter(|u| room.is_direct_member(u) || shared.rooms.is_member(room, u))
        .collect();
    SendReply::Online {
        presence_version,
        users: users.clone(),
    }
    .encode(out);
    Some(users)
}

/// A `History` page to write: `room`'s records after `from` up to `span.until`, at most
/// `limit` of them, oldest first.
#[derive(Debug)]
pub(crate) struct HistoryPage {
    /// The room, and the newest id the page may hold.
    pub span: RoomSpan,
    /// The cursor the page starts after.
    pub from: u64,
    /// Most records.
    pub limit: usize,
}

/// `History … <room>`: where the page of the room's records starts and ends, for the caller to
/// read and write (with its `End`) a piece at a time. `None` when the answer is a refusal or an
/// error, which is then encoded in `out`.
pub(crate) fn history(
    shared: &ServerState,
    session: &Session,
    room: &Room,
    before_id: u64,
    limit: u32,
    out: &mut Vec<u8>,
) -> Option<HistoryPage> {
    if let Err(r) = may_read(shared, session, room) {
        r.reply(session).encode(out);
        return None;
    }
    // The newest record now is the page's end: what is stored meanwhile is not in it.
    let below = match before_id {
        0 => shared.store.newest_id().saturating_add(1),
        id => id,
    };
    match shared.store.before_start_in(room, below, limit as usize) {
        Ok(from) => Some(HistoryPage {
            span: RoomSpan {
                room: room.clone(),
                after: 0,
                until: below - 1,
            },
            from,
            limit: limit as usize,
        }),
        Err(e) => {
            tracing::error!("history query failed: {e}");
            history_failed(out);
            None
        }
    }
}

/// The answer to a `History` whose records could not be read.
pub(crate) fn history_failed(out: &mut Vec<u8>) {
    SendReply::Err(ErrorFrame::new(
        ErrorCode::Internal,
        "could not read the history; try again",
    ))
    .encode(out);
}

/// `Rooms`: the session's rooms, the public ones, and those it is invited to.
fn list(shared: &ServerState, session: &Session, out: &mut Vec<u8>) {
    let user = &session.user;
    let admin = shared.rooms.is_admin(user);
    for info in shared.rooms.list() {
        let room = &info.room;
        let standing = shared.rooms.standing(room, user);
        let kind = match info.visibility {
            None if room.is_direct_member(user) => ListedKind::Direct,
            None => continue,
            Some(Visibility::Private) if standing.is_none() && !admin => continue,
            Some(Visibility::Private) => ListedKind::Private,
            Some(Visibility::Public) => ListedKind::Public,
        };
        let role = match standing {
            Some(Standing::Role(RoomRole::Owner)) => ListedRole::Owner,
            Some(Standing::Role(RoomRole::Moderator)) => ListedRole::Moderator,
            Some(Standing::Role(RoomRole::Member)) => ListedRole::Member,
            Some(Standing::Invited) => ListedRole::Invited,
            Some(Standing::Banned) | None => ListedRole::Outside,
        };
        let members = if room.is_general() {
            // Everyone, but those banned from it.
            let banned = shared
                .rooms
                .members(room)
                .iter()
                .filter(|m| m.standing == Standing::Banned)
                .count();
            shared.accounts.count().unwrap_or(0).saturating_sub(banned)
        } else {
            shared
                .rooms
                .members(room)
                .iter()
                .filter(|m| m.standing.is_member())
                .count()
        };
        SendReply::Room {
            room: room.clone(),
            kind,
            role,
            members: u32::try_from(members).unwrap_or(u32::MAX),
            topic: info.topic,
        }
        .encode(out);
    }
    SendReply::End.encode(out);
}

/// Handles a room request (`Rooms`, `Create`, `Join`, `Part`, `Invite`, `Topic`, `Privacy`,
/// `Role`, `Kick`, `Mute`, `Ban`, `Unban`) of `session`, appending the reply to `out`; `stored`
/// is raised to the id of a notice it stored.
pub(crate) fn handle(
    shared: &ServerState,
    session: &Session,
    request: SendRequest,
    out: &mut Vec<u8>,
    stored: &mut Stored,
) {
    if !session.rooms {
        SendReply::Err(ErrorFrame::new(
            ErrorCode::Version,
            "this session logged in without rooms (GC/1); update gc-client to use them",
        ))
        .encode(out);
        return;
    }
    if let SendRequest::Rooms { .. } = request {
        list(shared, session, out);
        return;
    }
    // Changes count against the sender's message rate: a flood of room requests is one too.
    if let Err(wait) = shared.rate.check(&session.user.key(), Instant::now()) {
        let c = &shared.config;
        SendReply::Err(ErrorFrame::new(
            ErrorCode::RateLimited,
            texts::rate_limited(c.rate_burst, c.rate_per_sec, wait),
        ))
        .encode(out);
        return;
    }
    let result = change(shared, session, request);
    if let Ok(Some(_)) = &result {
        shared.registry.membership_changed(&shared.notifier);
    }
    let reply = match result {
        Ok(Some((room, text, removed))) => match notice(shared, &room, &text) {
            Ok(reply) => {
                if let SendReply::Thx { id, .. } = reply {
                    stored.add(id, &room);
                    if let Some(user) = removed {
                        left(shared, &room, &user, id);
                        stored.add_user(&user);
                    }
                }
                reply
            }
            Err(r) => r.reply(session),
        },
        Ok(None) => SendReply::Thx {
            id: 0,
            timestamp: Timestamp::now(),
        },
        Err(r) => r.reply(session),
    };
    reply.encode(out);
}

/// Stores `text` in `room` from `System`.
fn notice(shared: &ServerState, room: &Room, text: &str) -> Result<SendReply, Refusal> {
    let system = Username::new(gc_protocol::limits::RESERVED_USERNAME)
        .map_err(|_| Refusal(ErrorCode::Internal, "no System name".into()))?;
    let id = ClientMsgId::random()
        .map_err(|_| Refusal(ErrorCode::Internal, "no randomness available".into()))?;
    match shared.store.append_in(room, &system, &id, text) {
        Ok(a) => Ok(SendReply::Thx {
            id: a.id,
            timestamp: a.timestamp,
        }),
        Err(e) => {
            tracing::error!(%room, "cannot store a room notice: {e}");
            Err(Refusal(
                ErrorCode::Internal,
                "the change was made, but its notice could not be stored".into(),
            ))
        }
    }
}

/// Makes the change a request asks for, if allowed: the room and text of the notice to store,
/// or `None` when nothing changed.
fn change(shared: &ServerState, session: &Session, request: SendRequest) -> Checked<Notice> {
    let me = &session.user;
    match request {
        SendRequest::Create {
            room,
            visibility,
            topic,
            ..
        } => create(shared, me, &room, visibility, &topic),
        SendRequest::Join { room, .. } => join(shared, session, &room),
        SendRequest::Part { room, .. } => part(shared, session, &room),
        SendRequest::Invite { room, username, .. } => {
            seen(shared, session, &room)?;
            plain_room(&room, "invited to")?;
            if room.is_general() {
                return Err(Refusal::forbidden("everyone is in #general already"));
            }
            at_least(shared, &room, me, Rank::Moderator, "invite")?;
            let target = account(shared, &username)?;
            match shared.rooms.standing(&room, &target) {
                Some(s) if s.is_member() => {
                    return Err(Refusal(
                        ErrorCode::Exists,
                        format!("{target} is in {room} already"),
                    ));
                }
                Some(Standing::Banned) => {
                    return Err(Refusal::forbidden(format!(
                        "{target} is banned from {room}: /unban them first"
                    )));
                }
                Some(Standing::Invited) => return Ok(None),
                _ => {}
            }
            set(shared, &room, &target, Standing::Invited)?;
            Ok(Some((room, format!("{me} invited {target}"), None)))
        }
        SendRequest::Topic { room, topic, .. } => {
            seen(shared, session, &room)?;
            plain_room(&room, "given a topic")?;
            if room.is_general() {
                return Err(Refusal::forbidden("#general has no topic to set"));
            }
            at_least(shared, &room, me, Rank::Owner, "set the topic")?;
            shared
                .rooms
                .set_topic(&room, &topic)
                .map_err(|e| internal(&e))?;
            let text = if topic.is_empty() {
                format!("{me} cleared the topic")
            } else {
                format!("{me} set the topic: {topic}")
            };
            Ok(Some((room, text, None)))
        }
        SendRequest::Privacy {
            room, visibility, ..
        } => {
            seen(shared, session, &room)?;
            plain_room(&room, "made public or private")?;
            if room.is_general() {
                return Err(Refusal::forbidden("#general is public for everyone"));
            }
            at_least(shared, &room, me, Rank::Owner, "change the privacy")?;
            shared
                .rooms
                .set_visibility(&room, visibility)
                .map_err(|e| internal(&e))?;
            Ok(Some((
                room.clone(),
                format!("{me} made {room} {visibility}"),
                None,
            )))
        }
        SendRequest::Role {
            room,
            username,
            role,
            ..
        } => {
            seen(shared, session, &room)?;
            plain_room(&room, "given roles")?;
            at_least(shared, &room, me, Rank::Owner, "give roles")?;
            let target = account(shared, &username)?;
            let Some(Standing::Role(current)) = shared.rooms.standing(&room, &target) else {
                return Err(Refusal::forbidden(format!("{target} is not in {room}")));
            };
            if current == role {
                return Ok(None);
            }
            if current == RoomRole::Owner && owners(shared, &room) == 1 {
                return Err(Refusal::forbidden(format!(
                    "{target} is the last owner of {room}: make someone else owner first"
                )));
            }
            set(shared, &room, &target, Standing::Role(role))?;
            Ok(Some((room, format!("{me} made {target} {role}"), None)))
        }
        SendRequest::Kick {
            room,
            username,
            reason,
            ..
        } => {
            let target = moderate(shared, session, &room, &username, "kick")?;
            if room.is_general() {
                return Err(Refusal::forbidden(
                    "everyone is in #general: mute or ban instead",
                ));
            }
            if !shared.rooms.is_member(&room, &target) {
                return Err(Refusal::forbidden(format!("{target} is not in {room}")));
            }
            shared
                .rooms
                .remove_member(&room, &target)
                .map_err(|e| internal(&e))?;
            let text = with_reason(format!("{target} was kicked by {me}"), &reason);
            Ok(Some((room, text, Some(target))))
        }
        SendRequest::Mute {
            room,
            username,
            seconds,
            reason,
            ..
        } => {
            let target = moderate(shared, session, &room, &username, "mute")?;
            if !shared.rooms.is_member(&room, &target) {
                return Err(Refusal::forbidden(format!("{target} is not in {room}")));
            }
            if seconds == 0 {
                shared
                    .rooms
                    .set_muted(&room, &target, None)
                    .map_err(|e| internal(&e))?;
                return Ok(Some((
                    room,
                    format!("{me} lifted the mute of {target}"),
                    None,
                )));
            }
            let until = Timestamp::from_micros(
                Timestamp::now()
                    .as_micros()
                    .saturating_add(u64::from(seconds) * 1_000_000),
            );
            shared
                .rooms
                .set_muted(&room, &target, Some(until))
                .map_err(|e| internal(&e))?;
            Ok(Some((
                room,
                with_reason(
                    format!(
                        "{target} was muted for {} by {me}",
                        duration(u64::from(seconds))
                    ),
                    &reason,
                ),
                None,
            )))
        }
        SendRequest::Ban {
            room,
            username,
            reason,
            ..
        } => {
            let target = moderate(shared, session, &room, &username, "ban")?;
            if shared.rooms.standing(&room, &target) == Some(Standing::Banned) {
                return Ok(None);
            }
            set(shared, &room, &target, Standing::Banned)?;
            let text = with_reason(format!("{target} was banned by {me}"), &reason);
            Ok(Some((room, text, Some(target))))
        }
        SendRequest::Unban { room, username, .. } => {
            let target = moderate(shared, session, &room, &username, "unban")?;
            if shared.rooms.standing(&room, &target) != Some(Standing::Banned) {
                return Ok(None);
            }
            shared
                .rooms
                .remove_member(&room, &target)
                .map_err(|e| internal(&e))?;
            Ok(Some((room, format!("{target} was unbanned by {me}"), None)))
        }
        // Not changes: served by the listener.
        SendRequest::Msg { .. }
        | SendRequest::History { .. }
        | SendRequest::Who { .. }
        | SendRequest::Bye { .. }
        | SendRequest::Rooms { .. }
        | SendRequest::Challenge { .. }
        | SendRequest::Passwd { .. }
        | SendRequest::Away { .. }
        | SendRequest::Back { .. }
        | SendRequest::Offer { .. }
        | SendRequest::Chunk { .. }
        | SendRequest::Fetch { .. } => Ok(None),
    }
}

/// The room and text of a notice to store, if anything changed, and whom it put out of the
/// room (they are owed the room up to that notice).
type Notice = Option<(Room, String, Option<Username>)>;

fn create(
    shared: &ServerState,
    me: &Username,
    room: &Room,
    visibility: Visibility,
    topic: &str,
) -> Checked<Notice> {
    if room.kind() == RoomKind::Direct {
        return Err(Refusal::forbidden(
            "a direct conversation is opened by its first message: /msg NAME text",
        ));
    }
    if room.is_general() || shared.rooms.get(room).is_some() {
        // A private room one may not see exists all the same: the name is taken.
        return Err(Refusal(
            ErrorCode::Exists,
            format!("the name {room} is taken; pick another"),
        ));
    }
    let admin = shared.rooms.is_admin(me);
    if !admin && shared.config.room_creation == RoomCreation::Admins {
        return Err(Refusal::forbidden(
            "on this server only its admins create rooms; ask one",
        ));
    }
    let max = shared.config.max_rooms_per_user;
    if !admin && shared.rooms.owned_count(me) >= max {
        return Err(Refusal::forbidden(format!(
            "you own {max} rooms, the most this server allows; remove or hand one over first"
        )));
    }
    joins(shared, room, me);
    match shared
        .rooms
        .create(room, visibility, me, topic, Timestamp::now())
    {
        Ok(_) => {}
        Err(StoreError::RoomExists { .. } | StoreError::RoomRule { .. }) => {
            // Made meanwhile by someone else.
            return Err(Refusal(
                ErrorCode::Exists,
                format!("the name {room} is taken; pick another"),
            ));
        }
        Err(e) => return Err(internal(&e)),
    }
    tracing::info!(user = %me, %room, %visibility, "room created");
    Ok(Some((
        room.clone(),
        format!("{me} created {room} ({visibility})"),
        None,
    )))
}

fn join(shared: &ServerState, session: &Session, room: &Room) -> Checked<Notice> {
    let me = &session.user;
    seen(shared, session, room)?;
    if room.kind() == RoomKind::Direct || room.is_general() {
        return Err(Refusal(
            ErrorCode::Exists,
            format!("you are in {room} already"),
        ));
    }
    match shared.rooms.standing(room, me) {
        Some(s) if s.is_member() => Err(Refusal(
            ErrorCode::Exists,
            format!("you are in {room} already"),
        )),
        Some(Standing::Banned) => Err(Refusal::forbidden(format!("you are banned from {room}"))),
        Some(Standing::Invited) => {
            joins(shared, room, me);
            set(shared, room, me, Standing::Role(RoomRole::Member))?;
            Ok(Some((room.clone(), format!("{me} joined"), None)))
        }
        _ => {
            let private = shared
                .rooms
                .get(room)
                .is_some_and(|i| i.visibility == Some(Visibility::Private));
            if private && !shared.rooms.is_admin(me) {
                return Err(Refusal::no_room(room));
            }
            joins(shared, room, me);
            set(shared, room, me, Standing::Role(RoomRole::Member))?;
            Ok(Some((room.clone(), format!("{me} joined"), None)))
        }
    }
}

fn part(shared: &ServerState, session: &Session, room: &Room) -> Checked<Notice> {
    let me = &session.user;
    seen(shared, session, room)?;
    if room.is_general() {
        return Err(Refusal::forbidden(
            "everyone is in #general; it cannot be left",
        ));
    }
    if room.kind() == RoomKind::Direct {
        return Err(Refusal::forbidden(
            "a direct conversation cannot be left; just stop writing",
        ));
    }
    match shared.rooms.standing(room, me) {
        Some(Standing::Role(RoomRole::Owner))
            if owners(shared, room) == 1 && members(shared, room) > 1 =>
        {
            Err(Refusal::forbidden(format!(
                "you are the last owner of {room}: make someone else owner first \
                 (/role NAME owner)"
            )))
        }
        Some(s) if s.is_member() || s == Standing::Invited => {
            shared
                .rooms
                .remove_member(room, me)
                .map_err(|e| internal(&e))?;
            Ok(Some((room.clone(), format!("{me} left"), Some(me.clone()))))
        }
        _ => Err(Refusal::forbidden(format!("you are not in {room}"))),
    }
}

/// The checks shared by the moderation requests: the room is a room the moderator can see,
/// they are a moderator at least, the target an account of lower rank.
fn moderate(
    shared: &ServerState,
    session: &Session,
    room: &Room,
    username: &Username,
    what: &str,
) -> Checked<Username> {
    seen(shared, session, room)?;
    plain_room(room, "moderated")?;
    let me = &session.user;
    let mine = at_least(shared, room, me, Rank::Moderator, what)?;
    let target = account(shared, username)?;
    if target.key() == me.key() {
        return Err(Refusal::forbidden(format!("you cannot {what} yourself")));
    }
    let theirs = rank(shared, room, &target);
    if theirs >= mine {
        return Err(Refusal::forbidden(format!(
            "{target} ranks as high as you in {room} or higher; you cannot {what} them"
        )));
    }
    Ok(target)
}

/// Refuses a direct conversation, which has no roles, moderation, topic rules or invitations.
fn plain_room(room: &Room, what: &str) -> Checked {
    if room.kind() == RoomKind::Direct {
        return Err(Refusal::forbidden(format!(
            "a direct conversation cannot be {what}"
        )));
    }
    Ok(())
}

/// `user`'s rank in `room`, if at least `min`.
fn at_least(
    shared: &ServerState,
    room: &Room,
    user: &Username,
    min: Rank,
    what: &str,
) -> Checked<Rank> {
    let r = rank(shared, room, user);
    if r >= min {
        return Ok(r);
    }
    let needed = match min {
        Rank::Owner => "an owner",
        _ => "a moderator",
    };
    Err(Refusal::forbidden(format!(
        "only {needed} of {room} may {what} there"
    )))
}

/// The account named `name`, as registered.
fn account(shared: &ServerState, name: &Username) -> Checked<Username> {
    shared
        .accounts
        .get(name.as_str())
        .map_err(|e| internal(&e))?
        .map(|a| a.username)
        .ok_or_else(|| {
            Refusal(
                ErrorCode::UnknownUser,
                format!("there is no account named {name}"),
            )
        })
}

fn set(shared: &ServerState, room: &Room, user: &Username, standing: Standing) -> Checked {
    shared
        .rooms
        .set_standing(room, user, standing)
        .map(|_| ())
        .map_err(|e| internal(&e))
}

fn owners(shared: &ServerState, room: &Room) -> usize {
    shared
        .rooms
        .members(room)
        .iter()
        .filter(|m| m.standing == Standing::Role(RoomRole::Owner))
        .count()
}

fn members(shared: &ServerState, room: &Room) -> usize {
    shared
        .rooms
        .members(room)
        .iter()
        .filter(|m| m.standing.is_member())
        .count()
}

fn with_reason(text: String, reason: &str) -> String {
    if reason.is_empty() {
        text
    } else {
        format!("{text}: {reason}")
    }
}

/// `90` → `2 min`: a duration as people say it (rounded up).
fn duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3_600 => format!("{} min", seconds.div_ceil(60)),
        3_600..86_400 => format!("{} h", seconds.div_ceil(3_600)),
        86_400..172_800 => "1 day".to_owned(),
        _ => format!("{} days", seconds.div_ceil(86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(60), "1 min");
        assert_eq!(duration(90), "2 min");
        assert_eq!(duration(3_600), "1 h");
        assert_eq!(duration(86_400), "1 day");
        assert_eq!(duration(31_536_000), "365 days");
    }

    #[test]
    fn ranks_order() {
        assert!(Rank::Admin > Rank::Owner);
        assert!(Rank::Owner > Rank::Moderator);
        assert!(Rank::Moderator > Rank::Member);
        assert!(Rank::Member > Rank::Outside);
    }
}

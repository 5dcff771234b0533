//! The conversations the terminal UI shows: one [`RoomView`] per room or direct conversation,
//! each with its own scrollback (so its own scroll position), who is online in it, how far older
//! messages were loaded, its topic, and what arrived while another one was shown (an unread count
//! and a mention marker). [`Rooms`] keeps them in the order they appeared, `#general` first, and
//! which one is shown: switching is changing an index, so it is instant and every view stays as
//! it was left.

use std::sync::Arc;

use gc_protocol::{Room, RoomKind, Username};

use super::look::Look;
use super::marks::Marks;
use super::people::People;
use super::scrollback::{Entry, Kind, Scrollback};

/// Loading older messages, past the top of a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Older {
    /// Scrolling past the top asks for a page.
    #[default]
    Idle,
    /// A page was asked for and has not come (from the cache or the server).
    Loading,
    /// The server had nothing older: the beginning is loaded, nothing more is asked.
    Exhausted,
}

impl Older {
    /// The page asked for came or will not come: another may be asked for. A beginning already
    /// reached stays reached.
    pub fn settle(&mut self) {
        if *self == Self::Loading {
            *self = Self::Idle;
        }
    }

    /// What was loaded is gone (`/clear`): the beginning is to be found again, unless a page is
    /// on its way.
    pub fn reopen(&mut self) {
        if *self == Self::Exhausted {
            *self = Self::Idle;
        }
    }
}

/// Whether this account is in a view's room, as far as the UI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    /// Shown from the cache; the server has not said yet (its room list will).
    Cached,
    /// In it: the server said so (room list, a join, a record delivered), or a direct
    /// conversation (which nobody joins or leaves).
    Joined,
    /// Not any more (kicked, banned, or left from another client): kept to read, dimmed in the
    /// list; `/part` closes it, `/join` goes back in.
    Left,
}

/// One conversation on screen.
#[derive(Debug)]
pub struct RoomView {
    /// The room or direct conversation.
    pub room: Room,
    /// What the list and the status bar call it: the room's name, or the other person's name for
    /// a direct conversation (as that account spells it once one of its messages was seen).
    pub title: String,
    /// Its messages and notices, and where it is scrolled to.
    pub log: Scrollback,
    /// Who is online in it.
    pub people: People,
    /// Its topic (empty: none).
    pub topic: String,
    /// Messages that arrived while another view was shown.
    pub unread: usize,
    /// One of them names this account (or is a direct message).
    pub mention: bool,
    /// How many of them name this account (or are direct messages).
    pub mentions: usize,
    /// Whether the account is in it.
    pub membership: Membership,
    /// Where loading older messages stands.
    pub older: Older,
    /// After `/clear`: older messages are below this id.
    pub floor: Option<u64>,
    /// The highest record id shown in it.
    pub newest: u64,
    /// The oldest record loaded for it but not shown (its writer is ignored): older pages are
    /// asked for below it, not again from the oldest one shown.
    pub oldest_hidden: Option<u64>,
    /// Just joined: what was said before is loaded once the join's notice (this record id) has
    /// arrived. (The client asks history only up to the records it holds, so asking sooner
    /// would find nothing.)
    pub history_after: Option<u64>,
}

impl RoomView {
    /// A view of `room` for the account `me`.
    pub fn new(room: Room, me: &str, membership: Membership) -> Self {
        Self {
            title: title(&room, me),
            room,
            log: Scrollback::default(),
            people: People::default(),
            topic: String::new(),
            unread: 0,
            mention: false,
            mentions: 0,
            membership,
            older: Older::Idle,
            floor: None,
            newest: 0,
            oldest_hidden: None,
            history_after: None,
        }
    }

    /// The record below which older pages are asked for: the oldest loaded, shown or hidden
    /// (after `/clear`, the floor).
    pub fn oldest_loaded(&self) -> Option<u64> {
        match (self.log.oldest_id(), self.oldest_hidden) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b).or(self.floor),
        }
    }

    /// A record of it was loaded but is not shown.
    pub fn hid(&mut self, id: u64) {
        self.oldest_hidden = Some(self.oldest_hidden.map_or(id, |o| o.min(id)));
    }

    /// Whether it is a direct conversation.
    pub fn is_direct(&self) -> bool {
        self.room.kind() == RoomKind::Direct
    }

    /// Whether record `id` is shown already. Records come in id order, so this looks back from
    /// the newest entry only as far as ids at or above `id`: one step for a new record.
    pub fn has_record(&self, id: u64) -> bool {
        for entry in self.log.entries().iter().rev() {
            match entry.message_id() {
                Some(shown) if shown == id => return true,
                Some(shown) if shown < id => return false,
                _ => {}
            }
        }
        false
    }

    /// Adds a new record's entry at the bottom; counts it as unread unless `shown` (the view is
    /// on screen). Messages from others count; the server's notices do not.
    pub fn push(&mut self, entry: Entry, shown: bool) {
        if let Some(id) = entry.message_id() {
            self.newest = self.newest.max(id);
        }
        if !shown
            && let Kind::Message {
                own: false,
                mention,
                ..
            } = &entry.kind
        {
            self.unread += 1;
            if *mention || self.is_direct() {
                self.mention = true;
                self.mentions += 1;
            }
        }
        self.log.push(entry);
    }

    /// The other person's name seen on one of their records: the title takes their spelling.
    pub fn saw(&mut self, user: &Username) {
        if self.is_direct() && self.title.eq_ignore_ascii_case(user.as_str()) {
            user.as_str().clone_into(&mut self.title);
        }
    }

    /// A server's notice about the topic (`bob set the topic: …`, `bob cleared the topic`):
    /// the topic it sets.
    pub fn topic_from_notice(&mut self, text: &str) {
        if let Some((_, topic)) = text.split_once(" set the topic: ") {
            topic.clone_into(&mut self.topic);
        } else if text.ends_with(" cleared the topic") {
            self.topic.clear();
        }
    }
}

/// Whether the server's notice `text` says that `me` is out of the room it is in: kicked, banned,
/// or left (from any client). The server delivers that notice to the one it puts out too, and
/// nothing of the room after it.
pub fn puts_out(text: &str, me: &str) -> bool {
    if me.is_empty() || text.len() < me.len() || !text.is_char_boundary(me.len()) {
        return false;
    }
    let (name, rest) = text.split_at(me.len());
    name.eq_ignore_ascii_case(me)
        && (rest == " left"
            || rest.starts_with(" was kicked by ")
            || rest.starts_with(" was banned by "))
}

/// What a conversation is called: a room by its name, a direct conversation by the other
/// person's name.
pub fn title(room: &Room, me: &str) -> String {
    match room.direct_members() {
        Some((a, b)) if a.eq_ignore_ascii_case(me) => b.to_owned(),
        Some((a, _)) => a.to_owned(),
        None => room.as_str().to_owned(),
    }
}

/// The views, in the order they appeared (`#general` first, always there), and which is shown.
#[derive(Debug)]
pub struct Rooms {
    views: Vec<RoomView>,
    current: usize,
    /// How every view is drawn.
    look: Arc<Look>,
    /// The read markers of the last run: each view made draws its "new since you left" line.
    since: Marks,
}

impl Default for Rooms {
    fn default() -> Self {
        Self::new("")
    }
}

impl Rooms {
    /// `#general` alone, shown.
    pub fn new(me: &str) -> Self {
        Self::with_look(me, Arc::default(), Marks::new())
    }

    /// `#general` alone, shown; views drawn as `look` says, with the "new since you left" line
    /// after the read markers `since`.
    pub fn with_look(me: &str, look: Arc<Look>, since: Marks) -> Self {
        let mut rooms = Self {
            views: Vec::new(),
            current: 0,
            look,
            since,
        };
        rooms.open(&Room::general(), me, Membership::Joined);
        rooms
    }

    /// The read markers of the last run.
    pub fn since(&self) -> &Marks {
        &self.since
    }

    /// The views, in order.
    pub fn views(&self) -> &[RoomView] {
        &self.views
    }

    /// The views, to change.
    pub fn views_mut(&mut self) -> &mut [RoomView] {
        &mut self.views
    }

    /// The index of the view shown.
    pub fn index(&self) -> usize {
        self.current
    }

    /// The view shown.
    pub fn current(&self) -> &RoomView {
        // `current` is always a valid index: views are never empty (#general stays) and every
        // removal moves it.
        &self.views[self.current.min(self.views.len() - 1)]
    }

    /// The view shown, to change.
    pub fn current_mut(&mut self) -> &mut RoomView {
        let i = self.current.min(self.views.len() - 1);
        &mut self.views[i]
    }

    /// `#general`'s view.
    pub fn general_mut(&mut self) -> &mut RoomView {
        &mut self.views[0]
    }

    /// The index of `room`'s view.
    pub fn find(&self, room: &Room) -> Option<usize> {
        self.views.iter().position(|v| &v.room == room)
    }

    /// `room`'s view, to change.
    pub fn get_mut(&mut self, room: &Room) -> Option<&mut RoomView> {
        self.views.iter_mut().find(|v| &v.room == room)
    }

    /// View `i`, to change.
    pub fn at_mut(&mut self, i: usize) -> Option<&mut RoomView> {
        self.views.get_mut(i)
    }

    /// The index of `room`'s view, made (at the end of the list) if there is none; the bool says
    /// whether it was made.
    pub fn open(&mut self, room: &Room, me: &str, membership: Membership) -> (usize, bool) {
        if let Some(i) = self.find(room) {
            return (i, false);
        }
        let mut view = RoomView::new(room.clone(), me, membership);
        view.log = Scrollback::with_look(Arc::clone(&self.look));
        view.log.set_read_line(self.since.get(room).copied());
        self.views.push(view);
        (self.views.len() - 1, true)
    }

    /// Shows view `i`: its unread count and mention marker are cleared. False when there is no
    /// such view or it is shown already.
    pub fn switch(&mut self, i: usize) -> bool {
        if i >= self.views.len() || i == self.current {
            return false;
        }
        // The one left behind was seen: its "new since you left" line has done its work.
        if let Some(left) = self.views.get_mut(self.current)
            && left.log.following()
        {
            left.log.set_read_line(None);
        }
        self.current = i;
        let view = &mut self.views[i];
        view.unread = 0;
        view.mention = false;
        view.mentions = 0;
        true
    }

    /// The index after (`forward`) or before the one shown, going round.
    pub fn neighbour(&self, forward: bool) -> usize {
        let n = self.views.len();
        if forward {
            (self.current + 1) % n
        } else {
            (self.current + n - 1) % n
        }
    }

    /// Removes `room`'s view (never `#general`'s). When it was shown, the one before it is shown
    /// instead. Returns whether there was one.
    pub fn remove(&mut self, room: &Room) -> bool {
        let Some(i) = self.find(room).filter(|&i| i > 0) else {
            return false;
        };
        self.views.remove(i);
        if self.current >= i {
            // `i` is at least 1, so this stays a valid index.
            self.current -= 1;
        }
        let current = self.current;
        let view = &mut self.views[current];
        view.unread = 0;
        view.mention = false;
        view.mentions = 0;
        true
    }

    /// Rooms other than `#general` whose members' presence is worth following: those the
    /// account is (or may be) in.
    pub fn watched(&self) -> Vec<Room> {
        self.views
            .iter()
            .filter(|v| !v.room.is_general() && v.membership != Membership::Left)
            .map(|v| v.room.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use chrono::{FixedOffset, TimeZone as _};

    use super::*;

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
    }

    fn message(id: u64, own: bool, mention: bool) -> Entry {
        let at = FixedOffset::east_opt(0)
            .unwrap()
            .timestamp_opt(1_700_000_000, 0)
            .unwrap();
        Entry::new(
            at,
            Kind::Message {
                id,
                user: if own { "alice" } else { "bob" }.into(),
                body: "x".into(),
                own,
                mention,
            },
        )
    }

    #[test]
    fn direct_conversations_are_titled_with_the_other_name() {
        assert_eq!(title(&room("@alice+bob"), "alice"), "bob");
        assert_eq!(title(&room("@alice+bob"), "Bob"), "alice");
        assert_eq!(title(&room("#dev"), "alice"), "#dev");
        let mut view = RoomView::new(room("@alice+bob"), "alice", Membership::Joined);
        view.saw(&Username::new("Carol").unwrap());
        assert_eq!(view.title, "bob", "not the other person");
        view.saw(&Username::new("BOB").unwrap());
        assert_eq!(view.title, "BOB", "their own spelling");
    }

    #[test]
    fn unread_counts_messages_from_others_while_not_shown() {
        let mut view = RoomView::new(room("#dev"), "alice", Membership::Joined);
        view.push(message(1, false, false), true);
        assert_eq!((view.unread, view.mention), (0, false), "shown: read");
        view.push(message(2, true, false), false);
        assert_eq!(view.unread, 0, "own messages are read");
        view.push(message(3, false, false), false);
        view.push(message(4, false, true), false);
        assert_eq!((view.unread, view.mention), (2, true));
        assert_eq!(view.newest, 4);
        assert!(view.has_record(3) && !view.has_record(5));

        let mut direct = RoomView::new(room("@alice+bob"), "alice", Membership::Joined);
        direct.push(message(5, false, false), false);
        assert!(direct.mention, "a direct message is for you");
    }

    #[test]
    fn notices_that_put_you_out() {
        assert!(puts_out("alice left", "alice"));
        assert!(puts_out("Alice was kicked by bob: spam", "alice"));
        assert!(puts_out("alice was banned by bob", "ALICE"));
        assert!(!puts_out("alice joined", "alice"));
        assert!(!puts_out("alicia left", "alice"));
        assert!(!puts_out("bob was kicked by alice", "alice"));
        assert!(!puts_out("alice lifted the mute of bob", "alice"));
        assert!(!puts_out("é left", "e"));
        assert!(!puts_out("anything", ""));
    }

    #[test]
    fn topics_follow_the_servers_notices() {
        let mut view = RoomView::new(room("#dev"), "alice", Membership::Joined);
        view.topic_from_notice("bob set the topic: ship it: friday");
        assert_eq!(view.topic, "ship it: friday");
        view.topic_from_notice("carol joined");
        assert_eq!(view.topic, "ship it: friday");
        view.topic_from_notice("bob cleared the topic");
        assert_eq!(view.topic, "");
    }

    #[test]
    fn switching_clears_the_marks_and_removal_keeps_a_view_shown() {
        let mut rooms = Rooms::new("alice");
        let (dev, made) = rooms.open(&room("#dev"), "alice", Membership::Joined);
        assert!(made);
        assert_eq!(
            rooms.open(&room("#dev"), "alice", Membership::Joined),
            (dev, false)
        );
        let (ops, _) = rooms.open(&room("#ops"), "alice", Membership::Joined);
        rooms.at_mut(ops).unwrap().unread = 3;
        rooms.at_mut(ops).unwrap().mention = true;
        assert!(rooms.switch(ops));
        assert!(!rooms.switch(ops), "shown already");
        assert!(!rooms.switch(7));
        assert_eq!(
            (rooms.current().unread, rooms.current().mention),
            (0, false)
        );
        assert_eq!(rooms.neighbour(true), 0, "round");
        assert_eq!(rooms.neighbour(false), dev);
        assert_eq!(rooms.watched(), [room("#dev"), room("#ops")]);

        assert!(rooms.remove(&room("#ops")));
        assert_eq!(rooms.current().room, room("#dev"), "the one before");
        assert!(!rooms.remove(&Room::general()), "#general stays");
        rooms.switch(0);
        assert!(rooms.remove(&room("#dev")));
        assert_eq!(rooms.index(), 0);
        assert_eq!(rooms.views().len(), 1);
    }
}

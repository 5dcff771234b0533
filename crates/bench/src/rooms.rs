//! Rooms in the bench (GC/3, issue #12): which client is in which room, creating and joining
//! them, and checking that every record reached exactly the members of its room.
//!
//! With `--rooms N` the clients of a run (slots `0..n`) are split into N rooms of equal size by
//! slot: slot `s` is in room `s % N`, named `#bench-<s % N>`. Senders are slots `0..S` (sender
//! `i` at slot `i`), so they are spread evenly over the rooms and each posts into its own. The
//! lowest slot of a room creates it (`Create <token> #bench-k public -`), the others `Join` it;
//! every client is in `#general` too, as every account is. Such clients sign in as GC/3
//! sessions (`Ping GC/3`, `AuthRequest … GC/3`).
//!
//! `--rooms 1` without `--gc3` is the bench as it was before rooms: GC/1 sign-ins (GC/2 over
//! TLS), every message in `#general`, frames byte for byte the GC/1 ones.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gc_protocol::{Room, SendRequest, Visibility};
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::reactor::{ClientReport, IoReport};
use crate::sender::SenderReport;
use crate::workloads::human;
use crate::{Run, client, lock, procfs};

/// The most rooms a run may have.
pub const MAX_ROOMS: usize = 1000;
/// How the bench's room names start.
const PREFIX: &str = "#bench-";

/// How a run's clients are placed in rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPlan {
    rooms: usize,
    gc3: bool,
}

impl RoomPlan {
    /// No rooms: GC/1 sessions, everything in `#general` (the bench before rooms).
    pub const GENERAL: Self = Self {
        rooms: 1,
        gc3: false,
    };

    /// `rooms` rooms of equal size for `clients` clients; with `rooms` above 1, or `gc3`, GC/3
    /// sessions in created rooms (`--gc3 --rooms 1`: all clients in one created room, to set a
    /// created room apart from `#general`).
    pub fn new(rooms: usize, gc3: bool, clients: usize) -> Result<Self, BenchError> {
        if rooms == 0 || rooms > MAX_ROOMS {
            return Err(BenchError::Invalid(format!(
                "--rooms must be 1 to {MAX_ROOMS}, not {rooms}"
            )));
        }
        if clients < rooms || !clients.is_multiple_of(rooms) {
            return Err(BenchError::Invalid(format!(
                "{clients} clients do not split into {rooms} rooms of equal size"
            )));
        }
        Ok(Self {
            rooms,
            gc3: gc3 || rooms > 1,
        })
    }

    /// Whether the clients are GC/3 sessions in created rooms.
    pub fn gc3(&self) -> bool {
        self.gc3
    }

    /// How many rooms.
    pub fn rooms(&self) -> usize {
        self.rooms
    }

    /// The room (index) of the client in `slot`, and of sender `slot`.
    pub fn room_of(&self, slot: usize) -> usize {
        slot % self.rooms
    }

    /// The name of room `k`: `#bench-k`, or `#general` without rooms.
    pub fn name(&self, k: usize) -> Room {
        if !self.gc3 {
            return Room::general();
        }
        match Room::new(format!("{PREFIX}{k}")) {
            Ok(room) => room,
            Err(e) => unreachable!("#bench-{k} is a room name ({e})"),
        }
    }

    /// The room field of a `Msg` into room `k` (`None`: `#general`, a GC/1 frame).
    pub fn msg_room(&self, k: usize) -> Option<Room> {
        self.gc3.then(|| self.name(k))
    }

    /// The slots among `0..clients` that are in room `k`, lowest (the creator) first.
    pub fn members(&self, k: usize, clients: usize) -> Vec<usize> {
        (k..clients).step_by(self.rooms).collect()
    }

    /// The index of room `room` in this plan, if it is one of its rooms.
    fn index(&self, room: &Room) -> Option<usize> {
        if !self.gc3 {
            return room.is_general().then_some(0);
        }
        let digits = room.as_str().strip_prefix(PREFIX)?;
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        digits.parse().ok().filter(|&k| k < self.rooms)
    }

    /// Whether a record of sender `sender` rightly says it is in `room`.
    pub fn labelled(&self, sender: usize, room: &Room) -> bool {
        self.index(room) == Some(self.room_of(sender))
    }

    /// Whether a frame in `room` may reach the client in `slot`: its own room, or `#general`.
    pub fn may_reach(&self, slot: usize, room: &Room) -> bool {
        room.is_general() || self.index(room) == Some(self.room_of(slot))
    }

    /// As JSON, for the run's parameters.
    pub fn json(&self, clients: usize) -> Value {
        json!({
            "rooms": self.rooms,
            "members_per_room": clients / self.rooms,
            "gc3_sessions": self.gc3,
            "room_names": if self.gc3 { format!("{PREFIX}0..{}", self.rooms - 1) }
                else { "#general".to_owned() },
        })
    }
}

/// What setting up the rooms did.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// Rooms created.
    pub created: usize,
    /// Joins.
    pub joined: usize,
    /// How long it all took.
    pub wall: Duration,
}

/// Creates the plan's rooms from the lowest slot of each (every create before any join), then
/// joins every other client of `0..clients` to its room, `concurrency` requests at a time, each
/// on a fresh connection to the sending port (as a client's `/join` is). Nothing to do without
/// rooms.
pub fn set_up(
    run: &Run<'_>,
    plan: &RoomPlan,
    clients: usize,
    concurrency: usize,
) -> Result<Setup, BenchError> {
    let t0 = Instant::now();
    if !plan.gc3() {
        return Ok(Setup {
            created: 0,
            joined: 0,
            wall: Duration::ZERO,
        });
    }
    let rooms = plan.rooms().min(clients);
    let creators: Vec<(usize, usize)> = (0..rooms).map(|k| (k, k)).collect();
    let joiners: Vec<(usize, usize)> = (rooms..clients).map(|s| (s, plan.room_of(s))).collect();
    for (jobs, create) in [(&creators, true), (&joiners, false)] {
        each(jobs, concurrency, |&(slot, k)| {
            let held = run
                .held(slot)
                .ok_or_else(|| BenchError::Invalid(format!("client {slot} is not signed in")))?;
            let room = plan.name(k);
            let (request, what) = if create {
                let request = SendRequest::Create {
                    token: held.token,
                    room: room.clone(),
                    visibility: Visibility::Public,
                    topic: String::new(),
                };
                (request, format!("Create {room}"))
            } else {
                let request = SendRequest::Join {
                    token: held.token,
                    room: room.clone(),
                };
                (request, format!("Join {room}"))
            };
            client::ask_thx(&run.server.addrs, &run.wire, held.ip, &request, &what).map(|_| ())
        })?;
    }
    Ok(Setup {
        created: creators.len(),
        joined: joiners.len(),
        wall: t0.elapsed(),
    })
}

/// Runs `f` on every job, `concurrency` threads (`bc-room-<k>`) at a time; the first error.
fn each<T: Sync>(
    jobs: &[T],
    concurrency: usize,
    f: impl Fn(&T) -> Result<(), BenchError> + Sync,
) -> Result<(), BenchError> {
    let next = AtomicUsize::new(0);
    let first_error: Mutex<Option<BenchError>> = Mutex::new(None);
    thread::scope(|scope| {
        for k in 0..concurrency.clamp(1, jobs.len().max(1)) {
            let (next, first_error, f) = (&next, &first_error, &f);
            let spawned = thread::Builder::new()
                .name(format!("bc-room-{k}"))
                .spawn_scoped(scope, move || {
                    while lock(first_error).is_none() {
                        let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                            break;
                        };
                        if let Err(e) = f(job) {
                            lock(first_error).get_or_insert(e);
                        }
                    }
                    procfs::thread_done();
                });
            if let Err(source) = spawned {
                lock(first_error).get_or_insert(BenchError::Thread {
                    name: format!("bc-room-{k}"),
                    source,
                });
            }
        }
    });
    match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The acknowledged ids of each room's messages, by room index (sender `i` posts into room
/// `plan.room_of(i)`).
pub fn ids_by_room(plan: &RoomPlan, reports: &[SenderReport]) -> Vec<Vec<u64>> {
    let mut ids = vec![Vec::new(); plan.rooms()];
    for r in reports {
        ids[plan.room_of(r.index)].extend_from_slice(&r.ids);
    }
    for v in &mut ids {
        v.sort_unstable();
    }
    ids
}

/// For every slot of `slots`, the newest id it must hold: the newest of its room's messages
/// (0 when its room got none).
pub fn targets(plan: &RoomPlan, slots: &[usize], ids: &[Vec<u64>]) -> Vec<(usize, u64)> {
    slots
        .iter()
        .map(|&s| {
            let newest = ids
                .get(plan.room_of(s))
                .and_then(|v| v.last().copied())
                .unwrap_or(0);
            (s, newest)
        })
        .collect()
}

/// Deliveries with rooms, record by record: every member got every record of its room once,
/// and no record of another room.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomDeliveries {
    /// Records owed: per client, the messages of its room.
    pub expected: u64,
    /// Of those, received.
    pub received: u64,
    /// Of those, never received.
    pub lost: u64,
    /// Deliveries of an id the client already had (any record).
    pub dups: u64,
    /// Messages of another room that reached a client (by id): each a leak.
    pub foreign: u64,
    /// `Rec` frames labelled with a room that is neither the client's nor `#general`.
    pub wrong_room_frames: u64,
    /// Bench messages whose `Rec` named another room than their sender's.
    pub mislabelled: u64,
    /// `Rec` frames labelled `#general` (the warm-up, notices there).
    pub general_frames: u64,
    /// `Rec` frames labelled with the client's own room (its messages and notices).
    pub own_room_frames: u64,
    /// Clients that lack at least one record of their room.
    pub clients_missing: usize,
    /// Clients that got at least one record of another room.
    pub clients_leaked_to: usize,
}

impl RoomDeliveries {
    /// No loss, no duplicate, no leak, every frame rightly labelled.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.dups == 0
            && self.foreign == 0
            && self.wrong_room_frames == 0
            && self.mislabelled == 0
    }

    /// As JSON (the keys of [`crate::workloads`]' deliveries, and the room checks).
    pub fn json(&self) -> Value {
        json!({
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicated": self.dups,
            "other_rooms_records": self.foreign,
            "wrong_room_frames": self.wrong_room_frames,
            "mislabelled": self.mislabelled,
            "general_frames": self.general_frames,
            "own_room_frames": self.own_room_frames,
            "clients_missing_some": self.clients_missing,
            "clients_given_other_rooms": self.clients_leaked_to,
            "ok": self.ok(),
        })
    }

    /// One line for the table.
    pub fn row(&self) -> String {
        format!(
            "{} of {} received · lost {} · duplicated {} · other rooms' records {} · wrongly \
             labelled {}{}",
            human(self.received as f64),
            human(self.expected as f64),
            self.lost,
            self.dups,
            self.foreign,
            self.wrong_room_frames + self.mislabelled,
            if self.ok() { " ✔" } else { " ✘" }
        )
    }
}

/// Checks the clients of `slots` against `ids` (each room's message ids, from
/// [`ids_by_room`]).
pub fn check(io: &IoReport, plan: &RoomPlan, slots: &[usize], ids: &[Vec<u64>]) -> RoomDeliveries {
    let mut d = RoomDeliveries::default();
    for &s in slots {
        let own = plan.room_of(s);
        let owed = ids.get(own).map_or(0, |v| v.len() as u64);
        d.expected += owed;
        let Some(c) = io.clients.iter().find(|c| c.slot == s) else {
            d.lost += owed;
            d.clients_missing += 1;
            continue;
        };
        let got = ids
            .get(own)
            .map_or(0, |v| v.iter().filter(|&&id| c.has(id)).count() as u64);
        d.received += got;
        d.lost += owed - got;
        if got < owed {
            d.clients_missing += 1;
        }
        let leaked: u64 = ids
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != own)
            .map(|(_, v)| v.iter().filter(|&&id| c.has(id)).count() as u64)
            .sum();
        d.foreign += leaked;
        if leaked > 0 {
            d.clients_leaked_to += 1;
        }
        d.dups += c.dups;
        d.mislabelled += c.mislabelled;
        tally_frames(&mut d, plan, s, c);
    }
    d
}

fn tally_frames(d: &mut RoomDeliveries, plan: &RoomPlan, slot: usize, c: &ClientReport) {
    for (room, n) in &c.by_room {
        if room.is_general() {
            d.general_frames += n;
        } else if plan.may_reach(slot, room) {
            d.own_room_frames += n;
        } else {
            d.wrong_room_frames += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rooms: usize, clients: usize) -> RoomPlan {
        RoomPlan::new(rooms, false, clients).expect("a plan")
    }

    #[test]
    fn clients_split_into_rooms_of_equal_size_with_the_senders_spread() {
        let p = plan(50, 1000);
        assert!(p.gc3());
        let mut sizes = vec![0; 50];
        for s in 0..1000 {
            sizes[p.room_of(s)] += 1;
        }
        assert!(sizes.iter().all(|&n| n == 20), "{sizes:?}");
        // 50 senders (slots 0..50): one per room.
        let rooms: std::collections::HashSet<usize> = (0..50).map(|i| p.room_of(i)).collect();
        assert_eq!(rooms.len(), 50);
        let members = p.members(7, 1000);
        assert_eq!(members.len(), 20);
        assert_eq!(members[0], 7, "the creator first");
        assert!(members.iter().all(|&s| p.room_of(s) == 7));
        assert_eq!(p.name(7).as_str(), "#bench-7");
        assert_eq!(p.msg_room(7).as_ref().map(Room::as_str), Some("#bench-7"));
        assert_eq!(p.json(1000)["members_per_room"], 20);
    }

    #[test]
    fn one_room_is_general_and_gc1_unless_asked() {
        let p = plan(1, 200);
        assert_eq!(p, RoomPlan::GENERAL);
        assert!(!p.gc3());
        assert!(p.name(0).is_general());
        assert_eq!(p.msg_room(0), None, "a GC/1 Msg has no room field");
        assert!(p.labelled(3, &Room::general()));
        assert!(!p.labelled(3, &Room::new("#bench-0").expect("room")));
        let created = RoomPlan::new(1, true, 200).expect("a plan");
        assert!(created.gc3());
        assert_eq!(created.name(0).as_str(), "#bench-0");
        assert!(created.labelled(199, &created.name(0)));
    }

    #[test]
    fn refuses_rooms_of_unequal_size() {
        assert!(RoomPlan::new(0, false, 10).is_err());
        assert!(RoomPlan::new(3, false, 10).is_err());
        assert!(RoomPlan::new(11, false, 10).is_err());
        assert!(RoomPlan::new(MAX_ROOMS + 1, false, 2000 * MAX_ROOMS).is_err());
        assert!(RoomPlan::new(5, false, 10).is_ok());
    }

    #[test]
    fn labels_name_exactly_the_senders_room() {
        let p = plan(50, 1000);
        let room = |n: &str| Room::new(n).expect("room");
        assert!(p.labelled(57, &room("#bench-7")));
        assert!(!p.labelled(57, &room("#bench-8")));
        assert!(!p.labelled(57, &room("#bench-07")));
        assert!(
            !p.labelled(57, &room("#bench-57")),
            "not a room of the plan"
        );
        assert!(!p.labelled(0, &Room::general()));
        assert!(p.may_reach(57, &Room::general()));
        assert!(p.may_reach(57, &room("#bench-7")));
        assert!(!p.may_reach(57, &room("#bench-8")));
        assert!(!p.may_reach(57, &room("#dev")));
    }

    fn report(index: usize, ids: &[u64]) -> SenderReport {
        SenderReport {
            index,
            ids: ids.to_vec(),
            ..SenderReport::default()
        }
    }

    #[test]
    fn ids_and_targets_go_by_the_senders_room() {
        let p = plan(2, 6);
        let ids = ids_by_room(&p, &[report(0, &[5, 9]), report(1, &[6]), report(2, &[7])]);
        assert_eq!(ids, [vec![5, 7, 9], vec![6]]);
        let t = targets(&p, &[0, 1, 2, 3, 4, 5], &ids);
        assert_eq!(t, [(0, 9), (1, 6), (2, 9), (3, 6), (4, 9), (5, 6)]);
        let lone = plan(3, 3);
        let ids = ids_by_room(&lone, &[report(0, &[4])]);
        assert_eq!(targets(&lone, &[0, 1, 2], &ids), [(0, 4), (1, 0), (2, 0)]);
    }

    #[test]
    fn counts_losses_duplicates_leaks_and_labels() {
        use crate::reactor::tests_support::client_report;
        let p = plan(2, 4);
        let (a, b) = (p.name(0), p.name(1));
        let ids = vec![vec![11, 13], vec![12]];
        let clean = IoReport {
            clients: vec![
                client_report(0, 10, &[11, 13], 0, &[(&a, 3), (&Room::general(), 1)]),
                client_report(1, 10, &[12], 0, &[(&b, 2)]),
                client_report(2, 10, &[11, 13], 0, &[(&a, 2)]),
                client_report(3, 10, &[12], 0, &[(&b, 1)]),
            ],
            ..IoReport::default()
        };
        let d = check(&clean, &p, &[0, 1, 2, 3], &ids);
        assert!(d.ok(), "{d:?}");
        assert_eq!((d.expected, d.received), (6, 6));
        assert_eq!((d.general_frames, d.own_room_frames), (1, 8));

        // Client 2 lacks 13 and got 12 (room 1's); client 3 got 12 twice, once labelled as room 0
        // (a frame of another room); client 1 is missing altogether.
        let bad = IoReport {
            clients: vec![
                client_report(0, 10, &[11, 13], 0, &[(&a, 2)]),
                client_report(2, 10, &[11, 12], 0, &[(&a, 1), (&b, 1)]),
                client_report(3, 10, &[12], 1, &[(&b, 1), (&a, 1)]),
            ],
            ..IoReport::default()
        };
        let d = check(&bad, &p, &[0, 1, 2, 3], &ids);
        assert!(!d.ok());
        assert_eq!(d.expected, 6);
        assert_eq!(d.received, 4);
        assert_eq!(d.lost, 2, "13 to client 2, 12 to client 1");
        assert_eq!(d.clients_missing, 2);
        assert_eq!(d.foreign, 1);
        assert_eq!(d.clients_leaked_to, 1);
        assert_eq!(d.dups, 1);
        assert_eq!(
            d.wrong_room_frames, 2,
            "client 2's #bench-1 and client 3's #bench-0"
        );
        assert!(d.row().ends_with('✘'));
        assert_eq!(d.json()["other_rooms_records"], 1);
    }
}

//! The client library (`gc_client_core::Client`) against real servers: logins and their failures,
//! chatting, presence, history, restarts of either side, rooms.

mod auth;
mod failover;
mod files;
mod gc4;
mod restart;
mod rooms;
mod session;

//! Support code for the end-to-end tests (servers, clients, free ports).

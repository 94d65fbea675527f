//! walbc: the layout of servers, a client for their Control service, and the operations that
//! chain commands across servers and wait for their result.

pub mod certs;
pub mod cli;
pub mod client;
pub mod failback;
pub mod failover;
pub mod layout;
pub mod lifecycle;
pub mod ops;
pub mod quickstart;
pub mod quiesce;
pub mod repo;
pub mod send;
pub mod words;

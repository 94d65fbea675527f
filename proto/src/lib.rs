//! walb-proto: the `.proto` files of every gRPC service, their generated tonic code, and the
//! transport settings every endpoint shares (window and message sizes, chunk checksums).
//! It must not hold logic: no volume state, no policy.

#![forbid(unsafe_code)]

#[allow(clippy::all, missing_docs)]
mod generated {
    tonic::include_proto!("walb");
}

pub use generated::*;

pub mod bulk;
pub mod control;
pub mod flow;
pub mod hashflow;
pub mod wire;

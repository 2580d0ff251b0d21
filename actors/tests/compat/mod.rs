//! Helpers of the nchan compatibility test: a raw HTTP/1.1 client and the server guards.

pub mod http;
pub mod servers;

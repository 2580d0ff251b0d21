//! Request heads, body framing and pipelining: the first byte picks a configuration, the rest
//! is what a client sent on one connection. See `iomux::__fuzz::parse_request_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    iomux::__fuzz::parse_request_target(data);
});

//! The chunked body decoder: whole, split and byte by byte, against a reference decoder. See
//! `iomux::__fuzz::chunked_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    iomux::__fuzz::chunked_target(data);
});

//! Message ids (`time:tag`) and the subscriber cursor read from a request. See
//! `iomux_actors::__fuzz::cursor_target`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    iomux_actors::__fuzz::cursor_target(data);
});

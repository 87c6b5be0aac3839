//! Arbitrary bytes through `Processor::process`: every emitted record must encode, frame and read
//! back with its schema; every refused message must be a documented `Rejection`; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    callstream_fuzz::run(data);
});

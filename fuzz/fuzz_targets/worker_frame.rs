//! A msgpack frame from a worker, as the master decodes each one it receives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kiln_proto::decode(data);
});

//! A master configuration, read as `master.star` is read: parsed, evaluated and converted.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(source) = std::str::from_utf8(data) {
        let _ = kiln_config::load_str("master.star", source);
    }
});

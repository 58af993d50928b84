//! A REST query string (filters, `field`, `order`, `limit`, `offset`, `property`), parsed
//! against the fields of every kind of resource.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        kiln_www::fuzzing::rest_query(raw);
    }
});

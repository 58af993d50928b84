//! A worker's archive of a directory (`DirectoryUpload`): the first byte says whether it is
//! gzipped, the rest is the archive, unpacked into a fresh directory it must not climb out of.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [flags, archive @ ..] = data else {
        return;
    };
    kiln_master::fuzzing::upload(archive, flags & 1 == 1);
});

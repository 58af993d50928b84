//! A Perspective Broker byte stream from a worker: Banana expressions (with Twisted's
//! vocabulary once the dialect is agreed, chosen by the first byte), each read as Jelly and as a
//! PB message.
#![no_main]

use kiln_proto::pb::banana::Decoder;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((first, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new();
    if first % 2 == 1 {
        decoder.use_vocabulary();
    }
    decoder.feed(stream);
    while let Ok(Some(sexp)) = decoder.next_expression() {
        let _ = kiln_proto::pb::jelly::unjelly(sexp.clone());
        let _ = kiln_proto::pb::read(sexp);
    }
});

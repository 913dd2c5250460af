//! Fuzzes the mail extractors: the first byte picks an mbox or a single message, the rest is
//! the mail. Any bytes give records or an error, never a panic or a hang.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, mail)) = data.split_first() else { return };
    common::extract(if pick % 2 == 0 { "file.mbox" } else { "file.eml" }, mail);
});

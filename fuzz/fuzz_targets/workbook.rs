//! Fuzzes the workbook extractor: any bytes give records or an error, never a panic or a hang.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::extract("file.xlsx", data));

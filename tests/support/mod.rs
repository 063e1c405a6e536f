//! Helpers shared by integration tests. Each test file that needs them says `mod support;`.
#![allow(dead_code)]

pub mod pg;

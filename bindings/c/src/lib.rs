//! # factlog-c
//!
//! The C ABI of the factlog engine: `include/factlog.h` (generated from this
//! crate by cbindgen, see `tests/header.rs`) and the libraries
//! `libfactlog_c.a` / `libfactlog_c.so`. A thin layer: every function checks
//! its C arguments, calls one method of the engine's public API and turns the
//! answer into C structs and a [`factlog_status`]. Nothing is implemented
//! twice; the rules a C caller must follow (pointers, lifetimes of views,
//! threads) are written at the top of the header (`cbindgen.toml`, `header`).
//!
//! Layers, each using only those below it:
//! - `types`: the `#[repr(C)]` structs and constants the header declares;
//! - `status`: [`factlog_status`], engine errors turned into statuses and
//!   messages, the thread-local last error, and the guard that turns a panic
//!   into `FACTLOG_PANIC`;
//! - `convert`: C structs to engine values and back (safe code on checked values);
//! - `handles`: the opaque handles (`factlog_store`, `factlog_iter`,
//!   `factlog_subscription`) and what they hold;
//! - `boundary` (unsafe): raw C pointers to checked Rust references;
//! - `exports` (unsafe: `#[no_mangle]`): the `extern "C"` functions, each a
//!   few lines of argument checks around one engine call.
//!
//! `unsafe` is allowed in `boundary` and `exports` only, and every unsafe
//! operation sits in its own block with a `// SAFETY:` argument
//! (`unsafe_op_in_unsafe_fn` is denied).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

#[allow(unsafe_code)]
mod boundary;
mod convert;
#[allow(unsafe_code)]
pub mod exports;
pub mod handles;
pub mod status;
pub mod types;

pub use exports::*;
pub use handles::{factlog_iter, factlog_store, factlog_subscription};
pub use status::factlog_status;
pub use types::*;

//! Under `cargo test` this crate is linked against libpython (maturin's
//! extension-module build is not): record that libpython's directory as an
//! rpath, so the test binary loads the interpreter it was linked against
//! (pyenv's, here) instead of whichever libpython of that name the system
//! loader finds first, or none. pyo3 emits nothing for maturin's build.

fn main() {
    pyo3_build_config::add_libpython_rpath_link_args();
}

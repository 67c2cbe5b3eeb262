#!/usr/bin/env bash
# Makes sure `cargo fuzz` can build the fuzz targets in fuzz/: cargo-fuzz (from crates.io,
# installed once with `cargo install --locked`) and a C++ compiler (libfuzzer-sys builds
# libFuzzer from source). The targets build on the stable toolchain with RUSTC_BOOTSTRAP=1
# (cargo fuzz passes unstable rustc flags); no nightly is needed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The release the targets and fuzz/run.sh were written against.
cargo_fuzz_version=0.13.2

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust with rustup (https://rustup.rs)"
command -v c++ >/dev/null 2>&1 || apt_install g++
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz $cargo_fuzz_version (cargo install)"
    cargo install --locked --version "$cargo_fuzz_version" cargo-fuzz ||
        die "cargo install cargo-fuzz failed (needs crates.io)"
fi

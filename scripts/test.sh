#!/usr/bin/env bash
# Runs omopkit's whole test suite, as CI does: formatting, lints, unit, integration and
# conformance tests, and the mapping packs' own tests.
#
# Conformance tests read the OHDSI reference data from ../shared when it is there; without
# it they report that they were skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustc --version

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "tests"
log=$(mktemp)
cargo test --workspace 2>&1 | tee "$log"
# Refuse a green run that ran nothing.
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
rm -f "$log"
if [ "$passed" -eq 0 ]; then
    echo "no test ran" >&2
    exit 1
fi

step "mapping packs"
for pack in mappings/*/; do
    [ -f "$pack/pack.yaml" ] || continue
    target/debug/omopkit mapping lint "$pack"
    if [ -f "$pack/tests.yaml" ]; then
        target/debug/omopkit mapping test "$pack"
    fi
done

echo
echo "all checks passed ($passed Rust tests)"

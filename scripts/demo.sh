#!/usr/bin/env bash
# omopkit's main job on its embedded default data: builds omopkit, generates 1,000 synthetic
# Synthea-style patients and a small vocabulary, and runs the Synthea mapping pack over them.
# The CDM lands as Parquet in demo-out/cdm, the run report in demo-out/cdm/_omopkit/report.json.
# Extra arguments go to `omopkit demo` (e.g. --patients 5000 --out /tmp/demo).
set -euo pipefail
cd "$(dirname "$0")/.."
# --all-targets builds with the same features as the test suite, so the two share one build.
cargo build --workspace --all-targets --quiet
exec target/debug/omopkit demo "$@"

#!/usr/bin/env bash
# Builds the binaries a device call runs (benches/device_run.sh), strips them and packs them
# into dist/bins.tar.xz: the device machine has no Rust toolchain, and what travels there is
# limited to 64 MiB with the working tree.
set -euo pipefail
cargo build --release --bin fovea-bench --example style_transfer
tests="gpu_parity conv2d optim torch_fixtures style_transfer profile memory training bad_input autocast grad_scaler"
mapfile -t lines < <(cargo test --workspace --no-run --message-format=json 2>/dev/null |
  python3 -c '
import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])')
stage=$(mktemp -d)
mkdir -p "$stage/tests" dist
cp target/release/fovea-bench target/release/examples/style_transfer "$stage/"
for l in "${lines[@]}"; do
  set -- $l
  [[ " $tests " == *" $1 "* ]] && cp "$2" "$stage/tests/$1"
done
strip "$stage"/fovea-bench "$stage"/style_transfer "$stage"/tests/*
tar cf - -C "$stage" . | xz -6 -T0 >dist/bins.tar.xz
rm -rf "$stage"
ls -la dist/bins.tar.xz

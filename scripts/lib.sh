# Shared by the demo scripts (sourced, not run).

# Ends the local cloud's workers of fleet $2 under state dir $1 and removes their records (the
# workers outlive a gateway by design: a restarted one adopts them; a demo cleans them up).
stop_local_fleet() {
  for f in "$1/$2"/*.json; do
    [ -e "$f" ] || continue
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("pid", ""))' "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

# A model repository at $1 holding the bundled models named after it (default mlp), linked, with
# on_deadline = "serve" (benchmarks measure throughput, not how many requests admission refuses).
bench_repo() {
  local repo=$1; shift
  for m in "${@:-mlp}"; do
    mkdir -p "$repo/$m"
    ln -s "$PWD/models/$m/model.onnx" "$repo/$m/model.onnx"
    { cat "models/$m/config.toml"; echo 'on_deadline = "serve"'; } > "$repo/$m/config.toml"
    if [ -f "models/$m/profile.toml" ]; then cp "models/$m/profile.toml" "$repo/$m/"; fi
  done
}

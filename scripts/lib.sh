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

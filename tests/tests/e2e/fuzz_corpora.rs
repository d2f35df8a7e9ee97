//! The fuzz targets' seed corpora (`fuzz/seeds/<target>/`) and every crash the fuzzers found
//! (`fuzz/regressions/<target>/`), replayed through the same entry points on stable: none may
//! panic. `scripts/fuzz.sh` runs the fuzzers themselves (nightly).

use mark_gateway::fuzzing::TARGETS;

#[test]
fn seed_corpora_and_crash_regressions_replay_cleanly() {
    let mut total = 0;
    for (name, run) in TARGETS {
        for dir in ["fuzz/seeds", "fuzz/regressions"] {
            let Ok(entries) = std::fs::read_dir(crate::util::root().join(dir).join(name)) else {
                continue;
            };
            for e in entries.flatten() {
                let data = std::fs::read(e.path()).unwrap();
                let r = std::panic::catch_unwind(|| run(&data));
                assert!(r.is_ok(), "{name}: {} panicked", e.path().display());
                total += 1;
            }
        }
        assert!(
            crate::util::root().join("fuzz/seeds").join(name).is_dir(),
            "no seed corpus for {name}"
        );
    }
    println!("{total} inputs replayed");
    assert!(total >= 20);
}

//! Replays every committed fuzz corpus (`fuzz/corpus/<target>/`, what `cargo fuzz` kept during
//! its runs; see RELIABILITY.md) through the same property checks the fuzz targets run, so a
//! regression on any input the fuzzer ever found interesting fails CI.

use std::path::Path;

#[test]
fn every_corpus_input_still_holds_its_property() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, check) in obs_examples::fuzz_checks::TARGETS {
        let dir = root.join(target);
        let inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!inputs.is_empty(), "empty corpus for {target}");
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", input.display());
        }
    }
}

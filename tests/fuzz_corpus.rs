//! Replays the fuzz seed corpus (fuzz/corpus/<target>/*) through the fuzz targets' entry points
//! in `iomux::__fuzz`, so that `cargo test` on stable exercises every seed with the same
//! invariant checks as `cargo fuzz` (see fuzz/README.md). The `cursor` target's corpus is
//! replayed by actors/tests/fuzz_corpus.rs.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The files of fuzz/<kind>/<target>/, sorted by name (none if the folder does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Run every input, naming each one that panics.
fn replay<T>(files: &[PathBuf], run: fn(&[u8]) -> T) {
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).expect("a readable input");
            panic::catch_unwind(|| run(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

fn replay_corpus<T>(target: &str, run: fn(&[u8]) -> T) {
    let files = inputs("corpus", target);
    assert!(!files.is_empty(), "no seeds in fuzz/corpus/{target}");
    replay(&files, run);
}

#[test]
fn parse_request_corpus() {
    replay_corpus("parse_request", iomux::__fuzz::parse_request_target);
}

#[test]
fn chunked_corpus() {
    replay_corpus("chunked", iomux::__fuzz::chunked_target);
}

//! Replays the `cursor` fuzz target's seed corpus (fuzz/corpus/cursor/*) through
//! `iomux_actors::__fuzz::cursor_target`, so that `cargo test` on stable exercises every seed
//! with the same checks as `cargo fuzz` (see fuzz/README.md).

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

#[test]
fn cursor_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/cursor");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = fs::read(path).expect("a readable seed");
            panic::catch_unwind(|| iomux_actors::__fuzz::cursor_target(&data)).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cursor seeds failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

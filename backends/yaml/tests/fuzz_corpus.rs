//! Replays the committed cargo-fuzz corpus of the `yaml_decode` target on
//! stable, so CI checks every seed and every input the fuzzer kept.

#[test]
fn the_committed_yaml_decode_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/yaml_decode");
    let mut ran = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| revstore_yaml::fuzzing::decode_case(&data)).is_err() {
            panic!("corpus file {} fails", path.display());
        }
        ran += 1;
    }
    assert!(ran >= 10, "the corpus has {ran} files");
}

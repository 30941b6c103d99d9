//! The shared conformance suite and in-process races on every file-based
//! backend, at both durability levels. (The memory backend runs the same
//! suite in the root crate's `memory_conformance` test.)

mod yaml_full {
    revstore::conformance_tests!(revstore_yaml::testkit::YamlTestBackend {
        durability: revstore::Durability::Full,
    });
}

mod yaml_relaxed {
    revstore::conformance_tests!(revstore_yaml::testkit::YamlTestBackend {
        durability: revstore::Durability::Relaxed,
    });
}

mod sqlite_full {
    revstore::conformance_tests!(revstore_sqlite::testkit::SqliteTestBackend {
        durability: revstore::Durability::Full,
    });
}

mod sqlite_relaxed {
    revstore::conformance_tests!(revstore_sqlite::testkit::SqliteTestBackend {
        durability: revstore::Durability::Relaxed,
    });
}

//! revstore's shared conformance suite and in-process races on this
//! backend, at both durability levels.

mod full {
    revstore::conformance_tests!(revstore_sqlite::testkit::SqliteTestBackend {
        durability: revstore::Durability::Full,
    });
}

mod relaxed {
    revstore::conformance_tests!(revstore_sqlite::testkit::SqliteTestBackend {
        durability: revstore::Durability::Relaxed,
    });
}

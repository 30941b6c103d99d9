//! revstore's shared conformance suite (change feed, schema and cache
//! included) and in-process races on this backend, at both durability
//! levels.

mod full {
    revstore::conformance_tests!(revstore_yaml::testkit::YamlTestBackend {
        durability: revstore::Durability::Full,
    });
}

mod relaxed {
    revstore::conformance_tests!(revstore_yaml::testkit::YamlTestBackend {
        durability: revstore::Durability::Relaxed,
    });
}

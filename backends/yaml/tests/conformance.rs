//! The shared conformance suite (change feed included) on this crate
//! alone, so it runs without building the other backends. The workspace's
//! `revstore-tests` package runs it again at both durability levels.

revstore::conformance_tests!(revstore_yaml::testkit::YamlTestBackend::default());

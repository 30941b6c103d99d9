//! revstore's shared conformance suite and in-process races on this
//! backend, at both durability levels, each test in a fresh namespace of
//! the server named by `REVSTORE_POSTGRES_URL` (skipped without it, except
//! under CI).

mod full {
    revstore::conformance_tests!(revstore_postgres::test_backend_or_skip!(
        revstore::Durability::Full
    ));
}

mod relaxed {
    revstore::conformance_tests!(revstore_postgres::test_backend_or_skip!(
        revstore::Durability::Relaxed
    ));
}

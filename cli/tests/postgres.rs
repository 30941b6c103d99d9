//! The command-line tool on a PostgreSQL store: `--store postgres://…`
//! opens it (with revstore's parameters in the URL), and a bad URL is an
//! invalid-configuration error (exit code 2) that never shows the password.

use std::process::{Command, Output};

use revstore_postgres::testkit::{server_url, PostgresLocation};
use serde_json::Value;

fn revstore(store: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_revstore"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("REVSTORE_STORE")
        .output()
        .unwrap()
}

#[test]
fn put_get_and_the_feed_through_a_postgres_url() {
    let Some(url) = server_url(module_path!()) else {
        return;
    };
    let location = PostgresLocation::new(&url, revstore::Durability::Relaxed, 100);
    let store = location.store_url();
    let put = revstore(store, &["put", "models", "orders", r#"{"z": 1, "a": "x"}"#]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = revstore(store, &["get", "models", "orders", "--json"]);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let doc: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(doc["revision"], 1);
    let keys: Vec<&String> = doc["body"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["z", "a"]);
    let seq = revstore(store, &["last-seq"]);
    assert_eq!(String::from_utf8_lossy(&seq.stdout).trim(), "1");
}

#[test]
fn a_bad_postgres_url_is_invalid_configuration_without_the_password() {
    let out = revstore(
        "postgres://me:hunter2@127.0.0.1:1/db?durability=sometimes",
        &["last-seq"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("durability"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

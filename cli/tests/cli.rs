//! End-to-end tests of the `revstore` binary: every command, output shape
//! and exit code, the batch protocol, and the multi-process demo.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use common::{batch, command, file_stores, on, on_with, run, run_with};
use serde_json::{json, Value};

#[test]
fn help_and_version_exit_0() {
    let help = run(&["--help"]).expect(0);
    for command in ["get", "put", "patch", "delete", "list", "batch", "demo"] {
        assert!(help.stdout.contains(command), "{command} in help");
    }
    assert!(!help.stdout.contains("demo-worker"), "the worker is hidden");
    assert!(run(&["--version"])
        .expect(0)
        .stdout
        .starts_with("revstore "));
}

#[test]
fn argument_errors_exit_2_in_one_line() {
    run(&["get", "c", "n"]).expect_error(2, "no store given");
    run(&["--store", "memory:", "fly"]).expect_error(2, "unrecognized subcommand");
    run(&["--store", "memory:", "get", "c"]).expect_error(2, "required");
    run(&[
        "--store",
        "memory:",
        "delete",
        "c",
        "n",
        "--expect-revision",
        "x",
    ])
    .expect_error(2, "invalid value");
    run(&[
        "--store",
        "memory:",
        "put",
        "c",
        "n",
        "{}",
        "--create",
        "--expect-revision",
        "1",
    ])
    .expect_error(2, "cannot be used with");
    let bare = run(&[]).expect(2);
    assert!(bare.stderr.contains("Usage"), "{}", bare.stderr);
}

#[test]
fn invalid_store_configuration_exits_2() {
    on("bogus", &["list", "c"]).expect_error(2, "invalid store configuration");
    on("ftp:x", &["list", "c"]).expect_error(2, "unknown scheme");
    on("memory:x", &["list", "c"]).expect_error(2, "memory: takes no path");
    on("memory:?durability=never", &["list", "c"]).expect_error(2, "durability");
    on("memory:?color=red", &["list", "c"]).expect_error(2, "unknown option");
    on("sqlite:", &["list", "c"]).expect_error(2, "the path is empty");
}

#[test]
fn store_comes_from_the_environment_unless_given() {
    let dir = tempfile::tempdir().unwrap();
    let [yaml, sqlite] = file_stores(dir.path());
    let mut cmd = command();
    cmd.env("REVSTORE_STORE", &yaml);
    run_with(cmd, &["put", "c", "n", "a: 1"], "").expect(0);
    let mut cmd = command();
    cmd.env("REVSTORE_STORE", &yaml);
    assert_eq!(
        run_with(cmd, &["get", "c", "n"], "").expect(0).stdout,
        "a: 1\n"
    );
    // --store wins over the variable
    let mut cmd = command();
    cmd.env("REVSTORE_STORE", &yaml);
    run_with(cmd, &["--store", &sqlite, "get", "c", "n"], "").expect_error(4, "not found");
}

#[test]
fn one_shot_commands_on_file_stores() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        // writes print the bare new revision
        let put = on(
            s,
            &[
                "put",
                "models",
                "orders",
                r#"{"description": "Orders", "joins": []}"#,
            ],
        );
        assert_eq!(put.expect(0).stdout, "1\n", "{store}");
        assert_eq!(
            on(s, &["get", "models", "orders"]).expect(0).stdout,
            "description: Orders\njoins: []\n"
        );
        assert_eq!(
            on(s, &["get", "models", "orders", "--json"])
                .expect(0)
                .json(),
            json!({"collection": "models", "name": "orders", "revision": 1,
                   "body": {"description": "Orders", "joins": []}})
        );
        on(s, &["put", "models", "orders", "{}", "--create"]).expect_error(3, "conflict");
        on(
            s,
            &["put", "models", "orders", "{}", "--expect-revision", "7"],
        )
        .expect_error(3, "expected revision 7, found revision 1");
        let patched = on(s, &["patch", "models", "orders", "cache: {rows: 42}"]).expect(0);
        assert_eq!(patched.stdout, "2\n");
        let patched = on(
            s,
            &[
                "patch",
                "models",
                "orders",
                r#"[{"op": "add", "path": "/joins/-", "value": "customers"}]"#,
                "--json-patch",
                "--expect-revision",
                "2",
            ],
        );
        assert_eq!(patched.expect(0).stdout, "3\n");
        on(
            s,
            &[
                "patch",
                "models",
                "orders",
                "a: 1",
                "--expect-revision",
                "2",
            ],
        )
        .expect_error(3, "conflict");
        on(
            s,
            &[
                "patch",
                "models",
                "orders",
                r#"[{"op": "test", "path": "/cache/rows", "value": 0}]"#,
                "--json-patch",
            ],
        )
        .expect_error(3, "patch test failed");
        on(
            s,
            &[
                "patch",
                "models",
                "orders",
                r#"[{"op": "jump"}]"#,
                "--json-patch",
            ],
        )
        .expect_error(2, "invalid patch");
        on(s, &["patch", "models", "orders", "[1]"])
            .expect_error(2, "merge patch must be a mapping");
        let doc = on(s, &["get", "models", "orders", "--json"])
            .expect(0)
            .json();
        assert_eq!(doc["revision"], 3);
        assert_eq!(
            doc["body"],
            json!({"description": "Orders", "joins": ["customers"], "cache": {"rows": 42}})
        );
        // a merge patch with null removes a key; key order is kept
        on(s, &["patch", "models", "orders", "cache: null"]).expect(0);
        assert_eq!(
            on(s, &["get", "models", "orders"]).expect(0).stdout,
            "description: Orders\njoins:\n- customers\n"
        );

        on(s, &["put", "models", "accounts", "x: 1"]).expect(0);
        assert_eq!(
            on(s, &["list", "models"]).expect(0).stdout,
            "accounts\t1\norders\t4\n"
        );
        assert_eq!(
            on(s, &["list", "models", "--json"]).expect(0).json(),
            json!({"collection": "models", "documents": [
                {"name": "accounts", "revision": 1}, {"name": "orders", "revision": 4}]})
        );
        assert_eq!(on(s, &["list", "empty"]).expect(0).stdout, "");

        on(s, &["delete", "models", "orders", "--expect-revision", "3"])
            .expect_error(3, "conflict");
        assert_eq!(
            on(s, &["delete", "models", "orders", "--expect-revision", "4"])
                .expect(0)
                .stdout,
            "5\n"
        );
        on(s, &["get", "models", "orders"]).expect_error(4, "document models/orders not found");
        on(s, &["delete", "models", "orders"]).expect_error(4, "not found");
        on(s, &["patch", "models", "orders", "a: 1"]).expect_error(4, "not found");
        // a re-create continues the revision sequence
        assert_eq!(
            on(s, &["put", "models", "orders", "a: 1", "--create"])
                .expect(0)
                .stdout,
            "6\n"
        );
        assert_eq!(
            on(s, &["list", "models"]).expect(0).stdout,
            "accounts\t1\norders\t6\n"
        );
    }
}

#[test]
fn bodies_come_from_stdin_as_yaml_or_json() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        on_with(s, &["put", "c", "a"], "b: 2\na: [1, x]\n").expect(0);
        on_with(s, &["put", "c", "j", "-"], r#"{"z": 1.5, "y": null}"#).expect(0);
        on_with(s, &["patch", "c", "j", "-"], "w: true").expect(0);
        assert_eq!(
            on(s, &["get", "c", "a", "--json"]).expect(0).json()["body"],
            json!({"b": 2, "a": [1, "x"]})
        );
        assert_eq!(
            on(s, &["get", "c", "j"]).expect(0).stdout,
            "z: 1.5\ny: null\nw: true\n"
        );
    }
}

#[test]
fn invalid_input_exits_2_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        on(s, &["put", "c", "n", "keep: 1"]).expect(0);
        for (body, needle) in [
            ("keep: .nan", "not finite"),
            ("keep: [.inf]", "\"/keep/0\""),
            (r#"{"keep": 1e999}"#, "out of range"),
            ("1: one", "not a string"),
            ("keep: {null: 1}", "not a string"),
            ("[1, 2]", "must be a mapping"),
            ("just text", "must be a mapping"),
            ("keep: [1", "body is not valid"),
            ("a: 1\na: 2", "duplicate"),
            (r#"{"a": 1, "a": 2}"#, "duplicate key"),
            ("a: !tag 1", "tag"),
        ] {
            on(s, &["put", "c", "n", body]).expect_error(2, needle);
            on(s, &["patch", "c", "n", body]).expect(2);
        }
        on_with(s, &["put", "c", "n"], "").expect_error(2, "must be a mapping");
        on(s, &["put", "bad/collection", "n", "{}"]).expect_error(2, "invalid collection");
        on(s, &["put", "c", "..", "{}"]).expect_error(2, "invalid name");
        on(s, &["get", "c", "-x"]).expect(2);
        on(s, &["list", "_schema!"]).expect_error(2, "invalid collection");
        assert_eq!(
            on(s, &["get", "c", "n", "--json"]).expect(0).json(),
            json!({"collection": "c", "name": "n", "revision": 1, "body": {"keep": 1}})
        );
    }
}

#[test]
fn stdin_that_is_not_utf8_exits_2() {
    let mut child = command()
        .args(["--store", "memory:", "put", "c", "n"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a: \xff\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
}

#[test]
fn corrupt_data_exits_1_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("yaml:{}", dir.path().display());
    on(&store, &["put", "c", "n", "a: 1"]).expect(0);
    let file = dir.path().join("c").join("n.yaml");
    assert!(
        file.exists(),
        "the YAML backend keeps c/n in {}",
        file.display()
    );
    std::fs::write(&file, "a: [unclosed\n").unwrap();
    on(&store, &["get", "c", "n"]).expect_error(1, "corrupt");
    on(&store, &["patch", "c", "n", "b: 2"]).expect_error(1, "corrupt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "a: [unclosed\n");
}

#[test]
fn an_unusable_store_location_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    // a folder where the database file should be
    let store = format!("sqlite:{}", dir.path().display());
    let run = on(&store, &["get", "c", "n"]).expect(1);
    assert!(run.stderr.starts_with("revstore: "), "{}", run.stderr);
}

#[test]
fn batch_on_memory_answers_every_request() {
    let answers = batch(concat!(
        r#"{"id":1,"op":"put","collection":"c","name":"n","body":{"a":1},"create":true}"#,
        "\n",
        r#"{"id":2,"op":"put","collection":"c","name":"n","body":{"a":1},"create":true}"#,
        "\n",
        r#"{"id":"p","op":"patch","collection":"c","name":"n","patch":{"b":{"c":2}},"expect_revision":1}"#,
        "\n",
        r#"{"id":4,"op":"patch","collection":"c","name":"n","patch":[{"op":"test","path":"/a","value":9}],"json_patch":true}"#,
        "\n",
        r#"{"id":5,"op":"get","collection":"c","name":"n"}"#,
        "\n",
        r#"{"op":"list","collection":"c"}"#,
        "\n",
        r#"{"id":7,"op":"delete","collection":"c","name":"n","expect_revision":1}"#,
        "\n",
        r#"{"id":8,"op":"delete","collection":"c","name":"n"}"#,
        "\n",
        r#"{"id":9,"op":"get","collection":"c","name":"n"}"#,
        "\n",
        r#"{"id":10,"op":"put","collection":"c","name":"bad name","body":{}}"#,
        "\n",
        r#"{"id":11,"op":"put","collection":"c","name":"m","body":[1]}"#,
        "\n",
        r#"{"id":12,"op":"patch","collection":"c","name":"n","patch":{"a":1},"expect_revision":3}"#,
        "\n",
    ));
    assert_eq!(answers.len(), 12);
    assert_eq!(
        answers[0],
        json!({"id": 1, "ok": true, "collection": "c", "name": "n", "revision": 1, "body": {"a": 1}})
    );
    let conflict = &answers[1];
    assert_eq!(conflict["id"], 2);
    assert_eq!(conflict["ok"], false);
    assert_eq!(conflict["error"]["kind"], "conflict");
    assert_eq!(conflict["error"]["exit_code"], 3);
    assert_eq!(conflict["error"]["expected"], "absent");
    assert_eq!(
        conflict["error"]["actual"],
        json!({"state": "live", "revision": 1})
    );
    assert!(conflict["error"]["message"]
        .as_str()
        .unwrap()
        .contains("c/n"));
    assert_eq!(answers[2]["id"], "p");
    assert_eq!(answers[2]["revision"], 2);
    assert_eq!(answers[2]["body"], json!({"a": 1, "b": {"c": 2}}));
    assert_eq!(answers[3]["error"]["kind"], "patch_test_failed");
    assert_eq!(answers[3]["error"]["exit_code"], 3);
    assert_eq!(
        answers[4],
        json!({"id": 5, "ok": true, "collection": "c", "name": "n", "revision": 2,
               "body": {"a": 1, "b": {"c": 2}}})
    );
    assert_eq!(
        answers[5],
        json!({"ok": true, "collection": "c", "documents": [{"name": "n", "revision": 2}]})
    );
    assert_eq!(answers[6]["error"]["kind"], "conflict");
    assert_eq!(
        answers[7],
        json!({"id": 8, "ok": true, "collection": "c", "name": "n", "revision": 3})
    );
    assert_eq!(answers[8]["error"]["kind"], "not_found");
    assert_eq!(answers[8]["error"]["exit_code"], 4);
    assert_eq!(answers[9]["error"]["kind"], "invalid_name");
    assert_eq!(answers[9]["error"]["exit_code"], 2);
    assert_eq!(answers[10]["error"]["kind"], "invalid_body");
    assert_eq!(
        answers[11]["error"]["actual"],
        json!({"state": "deleted", "revision": 3})
    );
}

#[test]
fn batch_answers_malformed_lines_and_goes_on() {
    let answers = batch(concat!(
        "not json\n",
        "\n",
        "   \n",
        "[1,2]\n",
        "{\"id\":1,\"op\":\"fly\"}\n",
        "{\"id\":2,\"op\":\"get\",\"collection\":\"c\"}\n",
        "{\"id\":3,\"op\":\"delete\",\"collection\":\"c\",\"name\":\"n\",\"expect_revison\":1}\n",
        "{\"id\":4,\"op\":\"put\",\"collection\":\"c\",\"name\":\"n\",\"body\":{},\"create\":true,\"expect_revision\":1}\n",
        "{\"id\":5,\"op\":\"put\",\"collection\":\"c\",\"name\":\"n\",\"body\":{\"ok\":1}}\r\n",
        "{\"id\":6,\"op\":\"list\",\"collection\":\"c\"}",
    ));
    assert_eq!(answers.len(), 8, "blank lines get no answer: {answers:?}");
    for (i, answer) in answers[..6].iter().enumerate() {
        assert_eq!(answer["ok"], false, "{i}: {answer}");
        assert_eq!(answer["error"]["kind"], "invalid_request", "{i}: {answer}");
        assert_eq!(answer["error"]["exit_code"], 2, "{i}: {answer}");
    }
    assert_eq!(answers[0].get("id"), None);
    assert_eq!(answers[2]["id"], 1);
    assert_eq!(answers[3]["id"], 2);
    assert!(answers[4]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expect_revison"));
    assert_eq!(answers[6]["revision"], 1);
    assert_eq!(
        answers[7],
        json!({"id": 6, "ok": true, "collection": "c", "documents": [{"name": "n", "revision": 1}]})
    );
}

#[test]
fn batch_answers_each_line_before_the_next_arrives() {
    let mut child = command()
        .args(["--store", "memory:", "batch"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut revision = 0;
    for i in 0..20 {
        // a compare-and-swap loop driven one request at a time, as a script would
        let request = if i == 0 {
            json!({"id": i, "op": "put", "collection": "c", "name": "n", "body": {"i": 0}, "create": true})
        } else {
            json!({"id": i, "op": "patch", "collection": "c", "name": "n", "patch": {"i": i}, "expect_revision": revision})
        };
        writeln!(stdin, "{request}").unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let answer: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(answer["id"], i);
        assert_eq!(answer["ok"], true, "{answer}");
        revision = answer["revision"].as_u64().unwrap();
        assert_eq!(revision, i + 1);
    }
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(status.success());
}

#[test]
fn batch_on_a_file_store_sees_one_shot_writes() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        on(&store, &["put", "c", "n", "a: 1"]).expect(0);
        let run = on_with(
            &store,
            &["batch"],
            "{\"op\":\"patch\",\"collection\":\"c\",\"name\":\"n\",\"patch\":{\"b\":2},\"expect_revision\":1}\n",
        )
        .expect(0);
        assert_eq!(run.json()["revision"], 2);
        assert_eq!(
            on(&store, &["get", "c", "n"]).expect(0).stdout,
            "a: 1\nb: 2\n"
        );
    }
}

#[test]
fn demo_loses_nothing_on_sqlite_and_yaml() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let run = on(&store, &["demo", "--processes", "3", "--writes", "20"]).expect(0);
        assert!(
            run.stdout.contains("3 processes x 20 writes"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("counter: 60 of 60 increments"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("60 of 60 fields"), "{}", run.stdout);
        assert!(run.stdout.ends_with("nothing lost\n"), "{}", run.stdout);
        // the demo names its documents per run, so it can run again
        on(&store, &["demo", "--processes", "2", "--writes", "5"]).expect(0);
        let listed = on(&store, &["list", "demo", "--json"]).expect(0).json();
        assert_eq!(listed["documents"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn demo_defaults_to_a_temporary_sqlite_store() {
    let mut cmd = command();
    // the variable is ignored by the demo: it never writes to a user's store
    cmd.env("REVSTORE_STORE", "memory:");
    let run = run_with(cmd, &["demo", "--processes", "2", "--writes", "10"], "").expect(0);
    assert!(run.stdout.contains("on sqlite:"), "{}", run.stdout);
    assert!(run.stdout.contains("(temporary)"), "{}", run.stdout);
    assert!(run.stdout.ends_with("nothing lost\n"), "{}", run.stdout);
}

#[test]
fn demo_refuses_memory_and_zero_counts() {
    on("memory:", &["demo"]).expect_error(2, "memory:");
    run(&["demo", "--processes", "0"]).expect_error(2, "--processes");
    run(&["demo", "--writes", "0"]).expect_error(2, "--writes");
}

//! End-to-end tests of the live-schema and change-feed commands: `schema`,
//! `migrate`, `changes` (once and following, as a child process),
//! `last-seq`, their batch ops with structured errors, the store URL
//! options, and the README's live-schema sequence.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::{batch, batch_on, command, file_stores, on, on_with, run, run_with, Run};
use serde_json::{json, Value};

/// How long a follower may take to print a change; generous, because the
/// machine running the tests may be busy.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

const SCHEMA_YAML: &str = "\
description: Custom attributes of assets
attributes:
  - name: owner
    type: string
    required: true
  - name: status
    type: enum
    values: [draft, active, retired]
";

/// `SCHEMA_YAML` without `draft` among the statuses.
const NARROWER_YAML: &str = "\
description: Custom attributes of assets
attributes:
  - name: owner
    type: string
    required: true
  - name: status
    type: enum
    values: [active, retired]
";

/// Runs the binary with `dir` as its working directory.
fn run_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = command();
    cmd.current_dir(dir);
    run_with(cmd, args, "")
}

/// Writes `text` to `dir/name` and returns the path as a string.
fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// One JSON line per request.
fn requests(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn parse_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn change(seq: u64, collection: &str, name: &str, revision: u64, kind: &str) -> Value {
    json!({"seq": seq, "collection": collection, "name": name, "revision": revision, "kind": kind})
}

/// The README's "Live schema, no restart" block, run as written (same
/// relative paths and arguments) in a fresh folder, on YAML and SQLite.
///
/// The README's last line expects `patch assets a1 '{status: draft}'` to
/// exit 2, but `a1` still holds `status: draft` at that point: the patch
/// changes nothing, and ratcheting checks only what a write changes, so it
/// succeeds. The test pins that down, then shows the refusal the README
/// means: setting `draft` on a document that holds another status, and
/// creating a document with it.
#[test]
fn readme_live_schema_sequence_on_yaml_and_sqlite() {
    for store in ["yaml:./store", "sqlite:./store.db"] {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        write_file(dir, "schema.yaml", SCHEMA_YAML);
        write_file(dir, "narrower.yaml", NARROWER_YAML);
        let s = |args: &[&str]| {
            let mut all = vec!["--store", store];
            all.extend_from_slice(args);
            run_in(dir, &all)
        };

        assert_eq!(
            s(&["schema", "set", "assets", "schema.yaml"])
                .expect(0)
                .stdout,
            "1\n"
        );
        assert_eq!(
            s(&[
                "put",
                "assets",
                "a1",
                "{owner: ann, status: draft}",
                "--create"
            ])
            .expect(0)
            .stdout,
            "1\n"
        );
        s(&["patch", "assets", "a1", "{colour: red}"]).expect_error(
            2,
            "assets/a1 breaks schema revision 1: /colour: attribute \"colour\" is not declared",
        );
        assert_eq!(
            s(&[
                "schema",
                "set",
                "assets",
                "narrower.yaml",
                "--expect-revision",
                "1"
            ])
            .expect(0)
            .stdout,
            "2\n"
        );
        // ratcheting: status draft is no longer allowed, but this write
        // does not change it
        assert_eq!(
            s(&["patch", "assets", "a1", "{owner: bob}"])
                .expect(0)
                .stdout,
            "2\n"
        );
        // the README's last line: draft can no longer be written anew
        s(&[
            "put",
            "assets",
            "a2",
            "{owner: cy, status: draft}",
            "--create",
        ])
        .expect_error(
            2,
            "assets/a2 breaks schema revision 2: /status: \"draft\" is not one of \"active\", \"retired\" (enum)",
        );
        assert_eq!(
            s(&["get", "assets", "a1"]).expect(0).stdout,
            "owner: bob\nstatus: draft\n",
            "{store}"
        );
        // ratcheting keeps the stale value only while it is not rewritten
        s(&["patch", "assets", "a1", "{status: active}"]).expect(0);
        s(&["patch", "assets", "a1", "{status: draft}"]).expect_error(
            2,
            "assets/a1 breaks schema revision 2: /status: \"draft\" is not one of \"active\", \"retired\" (enum)",
        );
        // the store sees both schema revisions and every accepted write
        assert_eq!(s(&["last-seq"]).expect(0).stdout, "5\n", "{store}");
        assert!(dir.join(&store[store.find("./").unwrap() + 2..]).exists());
    }
}

#[test]
fn help_lists_the_new_commands_and_store_options() {
    let help = run(&["--help"]).expect(0);
    for needle in [
        "schema",
        "migrate",
        "changes",
        "last-seq",
        "retain=N",
        "durability=full|relaxed",
        "5 change-feed cursor older than the retained history",
    ] {
        assert!(help.stdout.contains(needle), "{needle} in {}", help.stdout);
    }
    let schema = run(&["schema", "--help"]).expect(0);
    for command in ["get", "set", "delete"] {
        assert!(schema.stdout.contains(command), "{command} in schema help");
    }
    let batch_help = run(&["batch", "--help"]).expect(0);
    for op in [
        "schema_get",
        "schema_set",
        "schema_delete",
        "migrate",
        "changes",
        "last_seq",
    ] {
        assert!(batch_help.stdout.contains(op), "{op} in batch help");
    }
}

#[test]
fn store_url_options_are_checked() {
    on("memory:?retain=0", &["last-seq"]).expect_error(2, "retention is a positive number");
    on("memory:?retain=many", &["last-seq"]).expect_error(2, "retention");
    on("memory:?retain", &["last-seq"]).expect_error(2, "unknown option");
    assert_eq!(
        on("memory:?retain=5&durability=relaxed", &["last-seq"])
            .expect(0)
            .stdout,
        "0\n"
    );
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let with_options = format!("{store}?durability=relaxed&retain=10");
        on(&with_options, &["put", "c", "n", "a: 1"]).expect(0);
        assert_eq!(on(&store, &["last-seq"]).expect(0).stdout, "1\n");
    }
}

#[test]
fn new_argument_errors_exit_2() {
    let m = "memory:";
    on(m, &["schema"]).expect(2);
    on(m, &["schema", "set", "c"]).expect_error(2, "<FILE>");
    on(
        m,
        &[
            "schema",
            "set",
            "c",
            "f",
            "--create",
            "--expect-revision",
            "1",
        ],
    )
    .expect_error(2, "cannot be used with");
    on(m, &["schema", "get", "c", "--yaml"]).expect_error(2, "unexpected argument");
    on(m, &["migrate", "c", "--batch", "0"]).expect_error(2, "--batch");
    on(m, &["changes", "--limit", "0"]).expect_error(2, "--limit");
    on(m, &["changes", "--since", "-1"]).expect(2);
    on(m, &["changes", "--poll-ms", "5"]).expect_error(2, "--follow");
    on(m, &["changes", "--follow", "--poll-ms", "0"]).expect_error(2, "--poll-ms");
    on(m, &["schema", "get", "bad/collection"]).expect_error(2, "invalid collection");
    on(m, &["migrate", "_schema"]).expect_error(2, "invalid collection");
    on(m, &["changes", "--follow"]).expect_error(2, "memory:");
}

#[test]
fn schema_commands_on_file_stores() {
    let dir = tempfile::tempdir().unwrap();
    let schema_file = write_file(dir.path(), "schema.yaml", SCHEMA_YAML);
    let narrower_json = write_file(
        dir.path(),
        "narrower.json",
        r#"{"attributes": [{"name": "owner", "type": "string", "required": true},
                           {"name": "status", "type": "enum", "values": ["active", "retired"]}]}"#,
    );
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        s_none(s);
        assert_eq!(
            on(s, &["schema", "set", "assets", &schema_file, "--create"])
                .expect(0)
                .stdout,
            "1\n"
        );
        on(s, &["schema", "set", "assets", &schema_file, "--create"]).expect_error(
            3,
            "conflict on _schema/assets: expected no document, found revision 1",
        );
        on(
            s,
            &[
                "schema",
                "set",
                "assets",
                &narrower_json,
                "--expect-revision",
                "7",
            ],
        )
        .expect_error(3, "expected revision 7, found revision 1");
        assert_eq!(
            on(s, &["schema", "get", "assets"]).expect(0).stdout,
            "description: Custom attributes of assets\nattributes:\n- name: owner\n  type: string\n  \
             required: true\n- name: status\n  type: enum\n  values:\n  - draft\n  - active\n  - retired\n"
        );
        // JSON text from a file, compare-and-swap on the schema revision
        assert_eq!(
            on(
                s,
                &[
                    "schema",
                    "set",
                    "assets",
                    &narrower_json,
                    "--expect-revision",
                    "1"
                ]
            )
            .expect(0)
            .stdout,
            "2\n"
        );
        assert_eq!(
            on(s, &["schema", "get", "assets", "--json"])
                .expect(0)
                .json(),
            json!({"collection": "assets", "revision": 2, "schema": {"attributes": [
                {"name": "owner", "type": "string", "required": true},
                {"name": "status", "type": "enum", "values": ["active", "retired"]}]}})
        );
        // from stdin, unconditionally
        assert_eq!(
            on_with(
                s,
                &["schema", "set", "assets", "-"],
                "undeclared: allow\nattributes: [{name: owner, type: string}]\n"
            )
            .expect(0)
            .stdout,
            "3\n"
        );
        on(s, &["put", "assets", "a1", "{owner: ann, colour: red}"]).expect(0);
        on(s, &["put", "assets", "a2", "{owner: 7}"]).expect_error(2, "/owner");

        on(s, &["schema", "delete", "assets", "--expect-revision", "2"])
            .expect_error(3, "conflict on _schema/assets");
        assert_eq!(
            on(s, &["schema", "delete", "assets", "--expect-revision", "3"])
                .expect(0)
                .stdout,
            "4\n"
        );
        // no schema: writes are not checked any more
        on(s, &["put", "assets", "a2", "{owner: 7}"]).expect(0);
        s_none(s);
        on(s, &["schema", "delete", "assets"]).expect_error(4, "_schema/assets not found");
        // the revision sequence continues when a schema is set again
        assert_eq!(
            on(s, &["schema", "set", "assets", &schema_file, "--create"])
                .expect(0)
                .stdout,
            "5\n"
        );
    }
}

/// Asserts that `assets` has no schema, in both output forms.
fn s_none(store: &str) {
    on(store, &["schema", "get", "assets"]).expect_error(4, "document _schema/assets not found");
    on(store, &["schema", "get", "assets", "--json"]).expect_error(4, "not found");
}

#[test]
fn invalid_schemas_exit_2_listing_every_problem_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let [yaml, sqlite] = file_stores(dir.path());
    for store in [yaml, sqlite] {
        let s = store.as_str();
        on(s, &["schema", "set", "c", "-"]).expect_error(2, "must be a mapping");
        let bad = "extra: 1\nattributes:\n  - {name: owner, type: strin}\n  - {name: n, type: integer, min: 5, max: 1}\n";
        let run = on_with(s, &["schema", "set", "c", "-"], bad)
            .expect_error(2, "invalid schema _schema/c: ");
        for problem in [
            "/extra: unknown field",
            "/attributes/0/type: unknown type \"strin\"",
            "/attributes/1/min: min 5 is greater than max 1",
        ] {
            assert!(run.stderr.contains(problem), "{problem} in {}", run.stderr);
        }
        on_with(s, &["schema", "set", "c", "-"], "attributes: [unclosed")
            .expect_error(2, "schema is not valid");
        on_with(s, &["schema", "set", "c", "-"], "[1, 2]").expect_error(2, "must be a mapping");
        let not_utf8 = dir.path().join("latin1.yaml");
        std::fs::write(&not_utf8, b"description: caf\xe9\nattributes: []\n").unwrap();
        on(s, &["schema", "set", "c", not_utf8.to_str().unwrap()]).expect_error(2, "is not UTF-8");
        on(s, &["schema", "set", "c", "/nonexistent/schema.yaml"])
            .expect_error(1, "cannot read the schema file /nonexistent/schema.yaml");
        on(s, &["schema", "get", "c"]).expect(4);
        assert_eq!(on(s, &["last-seq"]).expect(0).stdout, "0\n");
    }
}

#[test]
fn a_schema_violation_exits_2_listing_every_violation_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_file(dir.path(), "schema.yaml", SCHEMA_YAML);
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        on(s, &["schema", "set", "assets", &schema]).expect(0);
        let run = on(
            s,
            &[
                "put",
                "assets",
                "a1",
                "{status: [draft], colour: red, size: 3}",
            ],
        )
        .expect_error(2, "assets/a1 breaks schema revision 1: ");
        let violations = [
            "/owner: required attribute \"owner\" is missing (required)",
            "/status: ",
            "(type)",
            "/colour: attribute \"colour\" is not declared",
            "/size: attribute \"size\" is not declared",
        ];
        for violation in violations {
            assert!(
                run.stderr.contains(violation),
                "{violation} in {}",
                run.stderr
            );
        }
        assert_eq!(run.stderr.matches("; /").count(), 3, "{}", run.stderr);
        on(s, &["get", "assets", "a1"]).expect(4);
        // a key holding a line break is escaped, so the error stays one line
        on(
            s,
            &["put", "assets", "a1", r#"{"owner": "ann", "x\ny": 1}"#],
        )
        .expect_error(2, r#"/x\ny: attribute "x\ny" is not declared"#);
    }
}

#[test]
fn migrate_reports_strips_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_file(dir.path(), "schema.yaml", SCHEMA_YAML);
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        assert_eq!(
            on(s, &["migrate", "assets"]).expect(0).stdout,
            "examined 0 documents of assets: assets has no schema, so nothing is undeclared; done\n"
        );
        // written before the schema existed
        on(
            s,
            &["put", "assets", "a1", "{owner: ann, colour: red, size: 3}"],
        )
        .expect(0);
        on(s, &["put", "assets", "a2", "{owner: bob}"]).expect(0);
        on(s, &["put", "assets", "a3", "{legacy: true, owner: cy}"]).expect(0);
        assert_eq!(
            on(s, &["migrate", "assets"]).expect(0).stdout,
            "examined 3 documents of assets: assets has no schema, so nothing is undeclared; done\n"
        );
        on(s, &["schema", "set", "assets", &schema]).expect(0);

        assert_eq!(
            on(s, &["migrate", "assets"]).expect(0).stdout,
            "found in a1 (revision 1): colour, size\n\
             found in a3 (revision 1): legacy\n\
             examined 3 documents of assets against schema revision 1: 2 with undeclared \
             attributes (--strip removes them); done\n"
        );
        assert_eq!(
            on(s, &["migrate", "assets", "--json", "--batch", "2"])
                .expect(0)
                .json(),
            json!({"collection": "assets", "mode": "report", "schema_revision": 1, "examined": 2,
                   "documents": [{"name": "a1", "revision": 1, "undeclared": ["colour", "size"]}],
                   "resume_after": "a2"})
        );
        // strip one document at a time, following the resume point
        assert_eq!(
            on(s, &["migrate", "assets", "--strip", "--batch", "1"])
                .expect(0)
                .stdout,
            "removed from a1 (now revision 2): colour, size\n\
             examined 1 document of assets against schema revision 1: 1 stripped; \
             more remain: continue with --resume-after a1\n"
        );
        assert_eq!(
            on(
                s,
                &[
                    "migrate",
                    "assets",
                    "--strip",
                    "--batch",
                    "1",
                    "--resume-after",
                    "a1"
                ]
            )
            .expect(0)
            .stdout,
            "examined 1 document of assets against schema revision 1: 0 stripped; \
             more remain: continue with --resume-after a2\n"
        );
        assert_eq!(
            on(
                s,
                &[
                    "migrate",
                    "assets",
                    "--strip",
                    "--resume-after",
                    "a2",
                    "--json"
                ]
            )
            .expect(0)
            .json(),
            json!({"collection": "assets", "mode": "strip", "schema_revision": 1, "examined": 1,
                   "documents": [{"name": "a3", "revision": 2, "undeclared": ["legacy"]}],
                   "resume_after": null})
        );
        assert_eq!(
            on(s, &["get", "assets", "a1"]).expect(0).stdout,
            "owner: ann\n"
        );
        assert_eq!(
            on(s, &["get", "assets", "a3"]).expect(0).stdout,
            "owner: cy\n"
        );
        assert_eq!(
            on(s, &["migrate", "assets"]).expect(0).stdout,
            "examined 3 documents of assets against schema revision 1: none with undeclared \
             attributes; done\n"
        );
    }
}

#[test]
fn changes_prints_the_feed_and_last_seq() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_file(dir.path(), "schema.yaml", SCHEMA_YAML);
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        assert_eq!(on(s, &["changes"]).expect(0).stdout, "");
        assert_eq!(on(s, &["last-seq"]).expect(0).stdout, "0\n");
        on(s, &["put", "c", "n", "a: 1"]).expect(0);
        on(s, &["patch", "c", "n", "b: 2"]).expect(0);
        on(s, &["put", "c", "n", "{}", "--create"]).expect(3); // refused: not in the feed
        on(s, &["delete", "c", "n"]).expect(0);
        on(s, &["put", "c", "n", "a: 1"]).expect(0);
        on(s, &["schema", "set", "assets", &schema]).expect(0);
        on(s, &["schema", "delete", "assets"]).expect(0);
        let all = vec![
            change(1, "c", "n", 1, "created"),
            change(2, "c", "n", 2, "updated"),
            change(3, "c", "n", 3, "deleted"),
            change(4, "c", "n", 4, "created"),
            change(5, "_schema", "assets", 1, "created"),
            change(6, "_schema", "assets", 2, "deleted"),
        ];
        assert_eq!(parse_lines(&on(s, &["changes"]).expect(0).stdout), all);
        assert_eq!(
            parse_lines(&on(s, &["changes", "--since", "0"]).expect(0).stdout),
            all
        );
        assert_eq!(
            parse_lines(
                &on(s, &["changes", "--since", "2", "--limit", "2"])
                    .expect(0)
                    .stdout
            ),
            all[2..4]
        );
        assert_eq!(on(s, &["changes", "--since", "6"]).expect(0).stdout, "");
        assert_eq!(on(s, &["changes", "--since", "99"]).expect(0).stdout, "");
        assert_eq!(on(s, &["last-seq"]).expect(0).stdout, "6\n");
        // the keys are in the order the issue asks for
        let first = on(s, &["changes", "--limit", "1"]).expect(0).stdout;
        assert_eq!(
            first,
            "{\"seq\":1,\"collection\":\"c\",\"name\":\"n\",\"revision\":1,\"kind\":\"created\"}\n"
        );
    }
}

#[test]
fn a_cursor_behind_retention_exits_5_and_recovery_works() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let s = format!("{store}?retain=2");
        let s = s.as_str();
        for i in 0..12 {
            on(s, &["put", "c", &format!("n{i}"), "a: 1"]).expect(0);
        }
        on(s, &["changes"]).expect_error(
            5,
            "changes after seq 0 are no longer retained (the feed keeps changes after seq ",
        );
        let run = on(s, &["changes", "--since", "1"]).expect_error(5, "re-list and resume");
        assert!(run.stderr.contains("after seq 1 "), "{}", run.stderr);
        on(s, &["changes", "--follow", "--poll-ms", "5"]).expect_error(5, "no longer retained");
        // the recovery the message asks for: take the seq, re-list, resume
        let seq = on(s, &["last-seq"]).expect(0).stdout;
        assert_eq!(seq, "12\n");
        assert_eq!(on(s, &["list", "c"]).expect(0).stdout.lines().count(), 12);
        on(s, &["put", "c", "later", "a: 1"]).expect(0);
        assert_eq!(
            parse_lines(&on(s, &["changes", "--since", seq.trim()]).expect(0).stdout),
            [change(13, "c", "later", 1, "created")]
        );
    }
}

/// A `revstore changes --follow` child process whose stdout lines are read
/// by a thread, so the test can wait for each with a timeout.
struct Follower {
    child: Child,
    lines: Receiver<String>,
}

impl Follower {
    fn start(store: &str, args: &[&str]) -> Follower {
        let mut child = command()
            .args(["--store", store, "changes", "--follow", "--poll-ms", "10"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next change printed, waiting at most `FOLLOW_TIMEOUT`.
    fn next(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(FOLLOW_TIMEOUT)
            .expect("the follower printed the change in time");
        serde_json::from_str(&line).unwrap()
    }

    fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "--follow keeps running"
        );
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn changes_follow_prints_writes_of_other_processes_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let schema = write_file(dir.path(), "schema.yaml", SCHEMA_YAML);
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        on(s, &["put", "c", "old", "a: 1"]).expect(0);
        let seq = on(s, &["last-seq"]).expect(0).stdout;
        let mut from_now = Follower::start(s, &["--since", seq.trim()]);
        let mut from_start = Follower::start(s, &[]);
        assert_eq!(from_start.next(), change(1, "c", "old", 1, "created"));

        on(s, &["put", "c", "n", "a: 1"]).expect(0);
        assert_eq!(from_now.next(), change(2, "c", "n", 1, "created"));
        on(s, &["patch", "c", "n", "b: 2"]).expect(0);
        assert_eq!(from_now.next(), change(3, "c", "n", 2, "updated"));
        on(s, &["schema", "set", "c", &schema]).expect(0);
        assert_eq!(from_now.next(), change(4, "_schema", "c", 1, "created"));
        on(s, &["patch", "c", "n", "colour: red"]).expect(2); // refused: no change
        on(s, &["delete", "c", "n"]).expect(0);
        assert_eq!(from_now.next(), change(5, "c", "n", 3, "deleted"));
        // a batch session is one more writing process
        on_with(
            s,
            &["batch"],
            "{\"op\":\"put\",\"collection\":\"c\",\"name\":\"b\",\"body\":{\"owner\":\"ann\"}}\n",
        )
        .expect(0);
        assert_eq!(from_now.next(), change(6, "c", "b", 1, "created"));

        let rest: Vec<Value> = (2..=6).map(|_| from_start.next()).collect();
        assert_eq!(rest[0], change(2, "c", "n", 1, "created"));
        assert_eq!(rest[4], change(6, "c", "b", 1, "created"));
        from_now.assert_running();
        from_start.assert_running();
        assert!(
            from_now.lines.try_recv().is_err(),
            "nothing printed but the changes"
        );
    }
}

#[test]
fn changes_follow_with_a_limit_exits_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    for store in file_stores(dir.path()) {
        let s = store.as_str();
        let mut follower = Follower::start(s, &["--limit", "2"]);
        on(s, &["put", "c", "a", "x: 1"]).expect(0);
        on(s, &["put", "c", "b", "x: 1"]).expect(0);
        on(s, &["put", "c", "c", "x: 1"]).expect(0);
        assert_eq!(follower.next(), change(1, "c", "a", 1, "created"));
        assert_eq!(follower.next(), change(2, "c", "b", 1, "created"));
        let status = follower.child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(
            follower.lines.recv_timeout(FOLLOW_TIMEOUT).is_err(),
            "stdout closed after the limit"
        );
    }
}

#[test]
fn batch_schema_ops_answer_with_structured_errors() {
    let schema = json!({"attributes": [
        {"name": "owner", "type": "string", "required": true},
        {"name": "size", "type": "integer", "min": 0, "max": 10}]});
    let answers = batch(&requests(&[
        json!({"id": 1, "op": "schema_get", "collection": "assets"}),
        json!({"id": 2, "op": "schema_set", "collection": "assets",
               "schema": {"extra": 1, "attributes": [{"name": "owner", "type": "strin"}]}}),
        json!({"id": 3, "op": "schema_set", "collection": "assets", "schema": schema, "create": true}),
        json!({"id": 4, "op": "schema_set", "collection": "assets", "schema": schema, "create": true}),
        json!({"id": 5, "op": "put", "collection": "assets", "name": "a1",
               "body": {"size": 11, "colour": "red"}}),
        json!({"id": 6, "op": "schema_get", "collection": "assets"}),
        json!({"id": 7, "op": "schema_delete", "collection": "assets", "expect_revision": 5}),
        json!({"id": 8, "op": "schema_delete", "collection": "assets", "expect_revision": 1}),
        json!({"id": 9, "op": "schema_delete", "collection": "assets"}),
        json!({"id": 10, "op": "schema_set", "collection": "assets", "schema": schema,
               "create": true}),
    ]));
    assert_eq!(answers.len(), 10);
    let error = |i: usize| &answers[i]["error"];
    assert_eq!(error(0)["kind"], "not_found");
    assert_eq!(error(0)["exit_code"], 4);
    assert_eq!(error(1)["kind"], "invalid_schema");
    assert_eq!(error(1)["exit_code"], 2);
    assert_eq!(
        error(1)["problems"],
        json!([
            {"path": "/extra", "message": "unknown field; expected one of description, undeclared, attributes"},
            {"path": "/attributes/0/type", "message": "unknown type \"strin\"; expected one of string, integer, float, boolean, datetime, enum, list_of_strings, list_of_integers, list_of_any, dict"},
        ])
    );
    assert_eq!(
        answers[2],
        json!({"id": 3, "ok": true, "collection": "assets", "revision": 1, "schema": schema})
    );
    assert_eq!(error(3)["kind"], "conflict");
    assert_eq!(error(3)["actual"], json!({"state": "live", "revision": 1}));
    assert_eq!(error(4)["kind"], "schema_violation");
    assert_eq!(error(4)["exit_code"], 2);
    assert_eq!(error(4)["schema_revision"], 1);
    let violations = error(4)["violations"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = violations
        .iter()
        .map(|v| (v["path"].as_str().unwrap(), v["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("/owner", "required"),
            ("/size", "max"),
            ("/colour", "undeclared")
        ]
    );
    for v in violations {
        assert!(!v["message"].as_str().unwrap().is_empty(), "{v}");
        assert!(
            error(4)["message"]
                .as_str()
                .unwrap()
                .contains(v["message"].as_str().unwrap()),
            "every violation is in the message too"
        );
    }
    assert_eq!(answers[5]["revision"], 1);
    assert_eq!(answers[5]["schema"], schema);
    assert_eq!(error(6)["kind"], "conflict");
    assert_eq!(
        answers[7],
        json!({"id": 8, "ok": true, "collection": "assets", "revision": 2})
    );
    assert_eq!(error(8)["kind"], "not_found");
    assert_eq!(answers[9]["revision"], 3);
}

#[test]
fn batch_migrate_changes_and_last_seq() {
    let answers = batch(&requests(&[
        json!({"op": "last_seq"}),
        json!({"op": "changes"}),
        json!({"op": "put", "collection": "c", "name": "a", "body": {"keep": 1, "old": 2}}),
        json!({"op": "put", "collection": "c", "name": "b", "body": {"keep": 1}}),
        json!({"op": "schema_set", "collection": "c",
               "schema": {"attributes": [{"name": "keep", "type": "integer"}]}}),
        json!({"id": "r", "op": "migrate", "collection": "c", "batch": 1}),
        json!({"id": "s", "op": "migrate", "collection": "c", "strip": true}),
        json!({"op": "migrate", "collection": "c", "resume_after": "a"}),
        json!({"id": "all", "op": "changes", "since": 0}),
        json!({"id": "page", "op": "changes", "since": 1, "limit": 2}),
        json!({"op": "changes", "since": 4}),
        json!({"op": "last_seq"}),
    ]));
    assert_eq!(answers[0], json!({"ok": true, "last_seq": 0}));
    assert_eq!(
        answers[1],
        json!({"ok": true, "changes": [], "next_since": 0})
    );
    assert_eq!(
        answers[5],
        json!({"id": "r", "ok": true, "collection": "c", "mode": "report", "schema_revision": 1,
               "examined": 1, "documents": [{"name": "a", "revision": 1, "undeclared": ["old"]}],
               "resume_after": "a"})
    );
    assert_eq!(
        answers[6],
        json!({"id": "s", "ok": true, "collection": "c", "mode": "strip", "schema_revision": 1,
               "examined": 2, "documents": [{"name": "a", "revision": 2, "undeclared": ["old"]}],
               "resume_after": null})
    );
    assert_eq!(answers[7]["examined"], 1);
    assert_eq!(answers[7]["documents"], json!([]));
    let all = vec![
        change(1, "c", "a", 1, "created"),
        change(2, "c", "b", 1, "created"),
        change(3, "_schema", "c", 1, "created"),
        change(4, "c", "a", 2, "updated"),
    ];
    assert_eq!(
        answers[8],
        json!({"id": "all", "ok": true, "changes": all, "next_since": 4})
    );
    assert_eq!(
        answers[9],
        json!({"id": "page", "ok": true, "changes": all[1..3], "next_since": 3})
    );
    assert_eq!(
        answers[10],
        json!({"ok": true, "changes": [], "next_since": 4})
    );
    assert_eq!(answers[11], json!({"ok": true, "last_seq": 4}));
}

#[test]
fn batch_compacted_carries_the_cursors() {
    let mut lines: Vec<Value> = (0..6)
        .map(|i| json!({"op": "put", "collection": "c", "name": format!("n{i}"), "body": {}}))
        .collect();
    lines.push(json!({"id": "old", "op": "changes", "since": 1}));
    lines.push(json!({"id": "now", "op": "last_seq"}));
    lines.push(json!({"id": "ok", "op": "changes", "since": 4}));
    let answers = batch_on("memory:?retain=2", &requests(&lines));
    let compacted = &answers[6];
    assert_eq!(compacted["id"], "old");
    assert_eq!(compacted["ok"], false);
    assert_eq!(compacted["error"]["kind"], "compacted", "{compacted}");
    assert_eq!(compacted["error"]["exit_code"], 5);
    assert_eq!(compacted["error"]["requested"], 1);
    assert_eq!(compacted["error"]["retained_after"], 4);
    assert!(compacted["error"]["message"]
        .as_str()
        .unwrap()
        .contains("re-list and resume"));
    assert_eq!(answers[7]["last_seq"], 6);
    assert_eq!(answers[8]["changes"].as_array().unwrap().len(), 2);
}

#[test]
fn batch_refuses_malformed_schema_and_feed_requests() {
    let answers = batch(&requests(&[
        json!({"id": 1, "op": "schema_set", "collection": "c", "schema": {"attributes": []},
               "create": true, "expect_revision": 1}),
        json!({"id": 2, "op": "schema_set", "collection": "c"}),
        json!({"id": 3, "op": "schema_get", "collection": "c", "name": "n"}),
        json!({"id": 4, "op": "migrate", "collection": "c", "batch": 0}),
        json!({"id": 5, "op": "migrate", "collection": "c", "strip": "yes"}),
        json!({"id": 6, "op": "changes", "limit": 0}),
        json!({"id": 7, "op": "changes", "limit": 10_001}),
        json!({"id": 8, "op": "changes", "since": -1}),
        json!({"id": 9, "op": "changes", "follow": true}),
        json!({"id": 10, "op": "last_seq", "since": 0}),
        json!({"id": 11, "op": "schema_delete", "collection": "c", "expect_revison": 1}),
    ]));
    assert_eq!(answers.len(), 11);
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], i + 1, "{answer}");
        assert_eq!(answer["error"]["kind"], "invalid_request", "{answer}");
        assert_eq!(answer["error"]["exit_code"], 2, "{answer}");
    }
    let schema_get = batch(r#"{"op":"schema_get","collection":"_schema"}"#);
    assert_eq!(schema_get[0]["error"]["kind"], "invalid_name");
}

//! `revstore`: read and write revisioned documents from the shell.

use std::env::VarError;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use revstore::{MigrationMode, MigrationReport, Patch, Precondition};
use revstore_cli::demo::{self, DemoDocuments, DemoSettings};
use revstore_cli::error::EXIT_INVALID_INPUT;
use revstore_cli::feed::{print_changes, FeedSettings};
use revstore_cli::ops::{change_to_json, execute, Op, Outcome};
use revstore_cli::text::{self, TextError};
use revstore_cli::{batch, open_store, CliError};
use serde_json::{json, Value};

/// The environment variable naming the store when `--store` is not given.
const STORE_VAR: &str = "REVSTORE_STORE";

/// Named, revisioned documents: concurrent writers never lose an update.
///
/// Exit codes: 0 ok, 2 invalid input (names, bodies, patches, arguments,
/// configuration, a write that breaks its collection's schema, an invalid
/// schema), 3 precondition failed (conflict, patch test failed),
/// 4 not found, 5 change-feed cursor older than the retained history
/// (re-list, then resume from `last-seq`), 1 anything else. Errors are one
/// line on stderr; a schema violation lists every violation on it.
#[derive(Debug, Parser)]
#[command(name = "revstore", version)]
struct Cli {
    /// Where the documents live: yaml:DIR, sqlite:FILE, memory: or a
    /// postgres://USER@HOST:PORT/DB URL, optionally followed by options
    /// joined with &: ?durability=full|relaxed (fsync on every commit, or
    /// survive only a process crash) and retain=N (how many changes the
    /// change feed keeps; default 100000); PostgreSQL also takes namespace=
    /// and pool_size= beside libpq's own parameters
    /// [default: $REVSTORE_STORE].
    /// A memory: store lasts for one process (use it with `batch`).
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a document's body as YAML, or the whole document as one JSON line.
    Get {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// Print {"collection","name","revision","body"} on one line.
        #[arg(long)]
        json: bool,
    },
    /// Write a whole body and print the new revision.
    Put {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// The body as YAML or JSON text; `-` or nothing reads it from stdin.
        body: Option<String>,
        /// Only create: fail with exit code 3 if the document exists.
        #[arg(long, conflicts_with = "expect_revision")]
        create: bool,
        /// Only overwrite this revision (compare-and-swap), else exit code 3.
        #[arg(long, value_name = "R")]
        expect_revision: Option<u64>,
    },
    /// Patch the current body and print the new revision.
    ///
    /// Without --expect-revision a patch that loses a race is re-applied to the
    /// newer body, so concurrent patches to different fields all survive.
    Patch {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// The patch as YAML or JSON text (`-` reads stdin): an RFC 7396
        /// merge patch (null removes a key), or with --json-patch an RFC 6902
        /// list of operations.
        patch: String,
        /// Read PATCH as an RFC 6902 JSON Patch.
        #[arg(long)]
        json_patch: bool,
        /// Only patch this revision (compare-and-swap), else exit code 3.
        #[arg(long, value_name = "R")]
        expect_revision: Option<u64>,
    },
    /// Delete a document and print the revision of the delete.
    ///
    /// The revision sequence continues if the document is created again.
    Delete {
        /// The collection.
        collection: String,
        /// The document name.
        name: String,
        /// Only delete this revision (compare-and-swap), else exit code 3.
        #[arg(long, value_name = "R")]
        expect_revision: Option<u64>,
    },
    /// List a collection's documents, sorted: name, a tab and revision per line.
    List {
        /// The collection.
        collection: String,
        /// Print {"collection","documents":[{"name","revision"}]} on one line.
        #[arg(long)]
        json: bool,
    },
    /// Read, set or remove a collection's schema (the document
    /// `_schema/<collection>`); every later write to the collection is
    /// checked against it, in every process, at once.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Report, or with --strip remove, attributes that the collection's
    /// schema does not declare.
    ///
    /// Documents are examined in name order; each strip is one
    /// compare-and-swap, so concurrent writes are not lost. Prints one line
    /// per document with undeclared attributes, then a summary with the
    /// resume point when --batch stopped early.
    Migrate {
        /// The collection.
        collection: String,
        /// Remove the undeclared attributes (default: only report them).
        #[arg(long)]
        strip: bool,
        /// Examine at most N documents [default: all].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        batch: Option<u64>,
        /// Start after this document name (the resume point of a previous run).
        #[arg(long, value_name = "NAME")]
        resume_after: Option<String>,
        /// Print the report on one line: {"collection","mode",
        /// "schema_revision","examined","documents":[{"name","revision","undeclared"}],"resume_after"}.
        #[arg(long)]
        json: bool,
    },
    /// Print committed changes, one JSON line each:
    /// {"seq","collection","name","revision","kind"}.
    ///
    /// Changes come in commit order from every process writing the store;
    /// kind is created, updated or deleted. Schema writes show as
    /// collection _schema. Without --follow it stops at the newest change.
    /// A --since older than the retained history exits with code 5: re-list
    /// what you mirror, then resume from `revstore last-seq` (taken before
    /// listing).
    Changes {
        /// Print the changes after this seq: 0 for all retained, or a seq
        /// printed earlier or by `last-seq`.
        #[arg(long, value_name = "SEQ", default_value_t = 0)]
        since: u64,
        /// Keep printing new changes as they are committed, until killed.
        #[arg(long)]
        follow: bool,
        /// Stop after N changes.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// With --follow: how often to look for new changes, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 100, requires = "follow",
              value_parser = clap::value_parser!(u64).range(1..=60_000))]
        poll_ms: u64,
    },
    /// Print the seq of the newest committed change (0 when none): the
    /// --since that resumes from now.
    LastSeq,
    /// Answer JSON requests on stdin, one per line, over one open store.
    ///
    /// Each request line gets one JSON answer line on stdout, e.g.
    /// {"id":1,"op":"patch","collection":"c","name":"n","patch":{"a":1},"expect_revision":3}.
    /// Ops: get, put (body, create), patch (patch, json_patch), delete, list,
    /// schema_get, schema_set (schema, create), schema_delete, migrate
    /// (strip, batch, resume_after), changes (since, limit; answers at once
    /// with the changes and next_since), last_seq; expect_revision and id
    /// are optional. Answers: {"id","ok":true,...} or
    /// {"id","ok":false,"error":{"kind","message","exit_code",...}}, with
    /// violations [{path,rule,message}] for a schema_violation, problems
    /// [{path,message}] for an invalid_schema and requested/retained_after
    /// for compacted.
    Batch,
    /// Show several processes writing one store at once, losing nothing.
    ///
    /// Worker processes increment one counter by compare-and-swap and
    /// merge-patch distinct fields of one document; the result is checked at
    /// the end. Without an explicit --store (the
    /// environment variable is ignored here) it uses a temporary SQLite store.
    Demo {
        /// How many worker processes.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        processes: u32,
        /// How many increments, and as many patches, per process.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        writes: u32,
    },
    /// Measure every backend against raw baselines from the same run and
    /// print medians, ratios and which performance targets are met.
    ///
    /// Runs on the real disk in a temporary folder (or --dir): fsync rate,
    /// raw file and SQLite write loops, each operation per backend and
    /// durability, warm reads, contention between threads and processes,
    /// growth with body and store size. The full run takes a few minutes;
    /// --quick is a smoke run of seconds whose figures mean little.
    Bench(revstore_cli::bench::BenchArgs),
    /// One bench worker process (started by `bench`).
    #[command(hide = true)]
    BenchWorker(revstore_cli::bench::WorkerArgs),
    /// One demo worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker {
        #[arg(long)]
        counter: String,
        #[arg(long)]
        shared: String,
        #[arg(long)]
        worker: u32,
        #[arg(long)]
        writes: u32,
    },
}

#[derive(Debug, Subcommand)]
enum SchemaCommand {
    /// Print the schema as YAML, or as one JSON line; exit code 4 when the
    /// collection has none.
    Get {
        /// The collection.
        collection: String,
        /// Print {"collection","revision","schema"} on one line.
        #[arg(long)]
        json: bool,
    },
    /// Set the schema and print its new revision.
    ///
    /// The schema is checked first; every problem is reported (exit code 2)
    /// and nothing is written. Documents already stored are not re-checked:
    /// a later write is checked on what it changes.
    Set {
        /// The collection.
        collection: String,
        /// A file holding the schema as YAML or JSON; `-` reads stdin.
        file: String,
        /// Only set a first schema: fail with exit code 3 if there is one.
        #[arg(long, conflicts_with = "expect_revision")]
        create: bool,
        /// Only replace this schema revision (compare-and-swap), else exit code 3.
        #[arg(long, value_name = "R")]
        expect_revision: Option<u64>,
    },
    /// Remove the schema (writes are no longer checked) and print the
    /// revision of the delete.
    Delete {
        /// The collection.
        collection: String,
        /// Only remove this schema revision (compare-and-swap), else exit code 3.
        #[arg(long, value_name = "R")]
        expect_revision: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`revstore list c | head -1`) needs
        // no message; the exit code still says the output is incomplete.
        Err(CliError::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("revstore: {}", one_line(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

/// The message with control characters escaped, so an error stays one
/// line on stderr even when it quotes a body's key or a JSON Pointer that
/// holds a newline.
fn one_line(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints a command-line error in one line (help and version as clap
/// formats them) and picks the exit code.
fn usage_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(EXIT_INVALID_INPUT)
        }
        _ => {
            // clap lists what a message is about (missing arguments, …) on
            // indented lines after it; keep those on the one line.
            let rendered = error.render().to_string();
            let mut lines = rendered.lines();
            let first = lines.next().unwrap_or_default();
            let mut message = first.strip_prefix("error: ").unwrap_or(first).to_owned();
            for detail in lines.take_while(|l| l.starts_with(char::is_whitespace)) {
                message.push(' ');
                message.push_str(detail.trim());
            }
            eprintln!("revstore: {message} (see 'revstore --help')");
            ExitCode::from(EXIT_INVALID_INPUT)
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let precondition =
        |expect: Option<u64>| expect.map_or(Precondition::Any, Precondition::Revision);
    let (op, json) = match cli.command {
        Command::Demo { processes, writes } => {
            let exe = std::env::current_exe()
                .map_err(|e| CliError::io("find the revstore executable", e))?;
            let settings = DemoSettings {
                store: cli.store,
                processes,
                writes,
            };
            return demo::run_demo(&exe, &settings, &mut std::io::stdout().lock());
        }
        Command::DemoWorker {
            counter,
            shared,
            worker,
            writes,
        } => {
            let store = open_store(&store_url(cli.store)?)?;
            let docs = DemoDocuments { counter, shared };
            let report = demo::run_worker(&store, &docs, worker, writes)?;
            return print(&format!(
                "{}\n",
                json!({"worker": worker, "conflicts": report.conflicts})
            ));
        }
        Command::Bench(args) => {
            let exe = std::env::current_exe()
                .map_err(|e| CliError::io("find the revstore executable", e))?;
            return revstore_cli::bench::main(
                &args,
                &exe,
                &mut std::io::stdout().lock(),
                &mut std::io::stderr().lock(),
            );
        }
        Command::BenchWorker(args) => {
            return revstore_cli::bench::worker::run(&args, &mut std::io::stdout().lock());
        }
        Command::Batch => {
            let store = open_store(&store_url(cli.store)?)?;
            return batch::run(&store, std::io::stdin().lock(), std::io::stdout().lock());
        }
        Command::Get {
            collection,
            name,
            json,
        } => (Op::Get { collection, name }, json),
        Command::Put {
            collection,
            name,
            body,
            create,
            expect_revision,
        } => {
            let body = parse_text(body.as_deref(), "body")?;
            let precondition = if create {
                Precondition::Absent
            } else {
                precondition(expect_revision)
            };
            let op = Op::Put {
                collection,
                name,
                body,
                precondition,
            };
            (op, false)
        }
        Command::Patch {
            collection,
            name,
            patch,
            json_patch,
            expect_revision,
        } => {
            let patch = parse_text(Some(&patch), "patch")?;
            let patch = if json_patch {
                Patch::Json(patch)
            } else {
                Patch::Merge(patch)
            };
            let op = Op::Patch {
                collection,
                name,
                patch,
                precondition: precondition(expect_revision),
            };
            (op, false)
        }
        Command::Delete {
            collection,
            name,
            expect_revision,
        } => {
            let op = Op::Delete {
                collection,
                name,
                precondition: precondition(expect_revision),
            };
            (op, false)
        }
        Command::List { collection, json } => (Op::List { collection }, json),
        Command::Schema { command } => schema_op(command)?,
        Command::Migrate {
            collection,
            strip,
            batch,
            resume_after,
            json,
        } => {
            let op = Op::Migrate {
                collection,
                mode: if strip {
                    MigrationMode::Strip
                } else {
                    MigrationMode::Report
                },
                resume_after,
                batch: batch.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            };
            (op, json)
        }
        Command::Changes {
            since,
            follow,
            limit,
            poll_ms,
        } => {
            let url = store_url(cli.store)?;
            if follow && url.starts_with("memory:") {
                return Err(CliError::Usage(
                    "--follow would wait forever on a memory: store, which no other process \
                     can write; use yaml:DIR or sqlite:FILE, or the changes op of batch"
                        .to_owned(),
                ));
            }
            let store = open_store(&url)?;
            let settings = FeedSettings {
                since,
                limit,
                follow,
                poll: Duration::from_millis(poll_ms),
            };
            print_changes(&store, &settings, &mut std::io::stdout().lock())?;
            return Ok(());
        }
        Command::LastSeq => (Op::LastSeq, false),
    };
    let store = open_store(&store_url(cli.store)?)?;
    let is_read = matches!(op, Op::Get { .. } | Op::List { .. } | Op::SchemaGet { .. });
    let outcome = execute(&store, op)?;
    print(&render(&outcome, is_read, json)?)
}

/// The store location: `--store`, else `$REVSTORE_STORE`.
fn store_url(explicit: Option<String>) -> Result<String, CliError> {
    match explicit {
        Some(url) => Ok(url),
        None => match std::env::var(STORE_VAR) {
            Ok(url) => Ok(url),
            Err(VarError::NotPresent) => Err(CliError::Usage(format!(
                "no store given: pass --store yaml:DIR, sqlite:FILE, memory: or postgres://…, or set {STORE_VAR}"
            ))),
            Err(VarError::NotUnicode(_)) => {
                Err(CliError::Usage(format!("{STORE_VAR} is not valid UTF-8")))
            }
        },
    }
}

/// The operation of a `schema` subcommand and whether to print JSON.
fn schema_op(command: SchemaCommand) -> Result<(Op, bool), CliError> {
    let precondition =
        |expect: Option<u64>| expect.map_or(Precondition::Any, Precondition::Revision);
    Ok(match command {
        SchemaCommand::Get { collection, json } => (Op::SchemaGet { collection }, json),
        SchemaCommand::Set {
            collection,
            file,
            create,
            expect_revision,
        } => {
            let schema = read_schema(&file)?;
            let precondition = if create {
                Precondition::Absent
            } else {
                precondition(expect_revision)
            };
            let op = Op::SchemaSet {
                collection,
                schema,
                precondition,
            };
            (op, false)
        }
        SchemaCommand::Delete {
            collection,
            expect_revision,
        } => {
            let op = Op::SchemaDelete {
                collection,
                precondition: precondition(expect_revision),
            };
            (op, false)
        }
    })
}

/// Parses a body or patch argument; `None` or `-` reads stdin.
fn parse_text(arg: Option<&str>, what: &'static str) -> Result<Value, CliError> {
    match arg {
        Some(text) if text != "-" => Ok(text::parse_value(text, what)?),
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::io(format!("read the {what} from stdin"), e))?;
            parse_bytes(bytes, "stdin", what)
        }
    }
}

/// Reads and parses a schema file; `-` reads stdin.
fn read_schema(file: &str) -> Result<Value, CliError> {
    if file == "-" {
        return parse_text(None, "schema");
    }
    let bytes =
        std::fs::read(file).map_err(|e| CliError::io(format!("read the schema file {file}"), e))?;
    parse_bytes(bytes, file, "schema")
}

fn parse_bytes(bytes: Vec<u8>, source: &str, what: &'static str) -> Result<Value, CliError> {
    let text = String::from_utf8(bytes).map_err(|e| TextError {
        what,
        reason: format!("{source} is not UTF-8: {e}"),
    })?;
    Ok(text::parse_value(&text, what)?)
}

/// The text a one-shot command prints: writes print the bare new revision;
/// `get` and `schema get` the body as YAML; `list` name and revision per
/// line; `migrate` a line per document and a summary; `--json` the outcome
/// as one JSON line.
fn render(outcome: &Outcome, is_read: bool, json: bool) -> Result<String, CliError> {
    if json {
        return Ok(format!("{}\n", Value::Object(outcome.to_json())));
    }
    let yaml = |body: &revstore::Body| {
        text::to_yaml(&Value::Object(body.clone()))
            .map_err(|e| CliError::io("print the body as YAML", std::io::Error::other(e)))
    };
    Ok(match outcome {
        Outcome::Document { body, .. } if is_read => yaml(body)?,
        Outcome::Schema { schema, .. } if is_read => yaml(schema)?,
        Outcome::Document { revision, .. }
        | Outcome::Deleted { revision, .. }
        | Outcome::Schema { revision, .. }
        | Outcome::SchemaDeleted { revision, .. } => format!("{revision}\n"),
        Outcome::LastSeq(seq) => format!("{seq}\n"),
        Outcome::Listed { entries, .. } => entries
            .iter()
            .map(|e| format!("{}\t{}\n", e.name, e.revision))
            .collect(),
        Outcome::Migrated {
            collection,
            mode,
            report,
        } => render_migration(collection, *mode, report),
        Outcome::Changes { changes, .. } => changes
            .iter()
            .map(|c| format!("{}\n", change_to_json(c)))
            .collect(),
    })
}

/// `found in a1 (revision 3): colour, size` (or `removed from a1 (now
/// revision 4): …` when stripping) per document, then a summary line that
/// ends in `done` or in the `--resume-after` to continue with.
fn render_migration(collection: &str, mode: MigrationMode, report: &MigrationReport) -> String {
    let mut out = String::new();
    for doc in &report.documents {
        let undeclared = doc.undeclared.join(", ");
        out.push_str(&match mode {
            MigrationMode::Report => {
                format!(
                    "found in {} (revision {}): {undeclared}\n",
                    doc.name, doc.revision
                )
            }
            MigrationMode::Strip => format!(
                "removed from {} (now revision {}): {undeclared}\n",
                doc.name, doc.revision
            ),
        });
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let examined = format!(
        "examined {} document{} of {collection}",
        report.examined,
        plural(report.examined)
    );
    let found = report.documents.len();
    let result = match (report.schema_revision, mode) {
        (0, _) => format!("{examined}: {collection} has no schema, so nothing is undeclared"),
        (revision, MigrationMode::Report) if found > 0 => format!(
            "{examined} against schema revision {revision}: {found} with undeclared attributes \
             (--strip removes them)"
        ),
        (revision, MigrationMode::Report) => format!(
            "{examined} against schema revision {revision}: none with undeclared attributes"
        ),
        (revision, MigrationMode::Strip) => {
            format!("{examined} against schema revision {revision}: {found} stripped")
        }
    };
    let next = match &report.resume_after {
        Some(name) => format!("more remain: continue with --resume-after {name}"),
        None => "done".to_owned(),
    };
    out.push_str(&format!("{result}; {next}\n"));
    out
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("write to stdout", e))
}

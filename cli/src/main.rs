//! `revstore`: read and write revisioned documents from the shell.

use std::env::VarError;
use std::io::{Read, Write};
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use revstore::{Patch, Precondition};
use revstore_cli::demo::{self, DemoDocuments, DemoSettings};
use revstore_cli::error::EXIT_INVALID_INPUT;
use revstore_cli::ops::{execute, Op, Outcome};
use revstore_cli::text::{self, TextError};
use revstore_cli::{batch, open_store, CliError};
use serde_json::{json, Value};

/// The environment variable naming the store when `--store` is not given.
const STORE_VAR: &str = "REVSTORE_STORE";

/// Named, revisioned documents: concurrent writers never lose an update.
///
/// Exit codes: 0 ok, 2 invalid input (names, bodies, patches, arguments,
/// configuration), 3 precondition failed (conflict, patch test failed),
/// 4 not found, 1 anything else.
#[derive(Debug, Parser)]
#[command(name = "revstore", version)]
struct Cli {
    /// Where the documents live: yaml:DIR, sqlite:FILE or memory:, optionally
    /// followed by ?durability=full|relaxed [default: $REVSTORE_STORE].
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
    /// Answer JSON requests on stdin, one per line, over one open store.
    ///
    /// Each request line gets one JSON answer line on stdout, e.g.
    /// {"id":1,"op":"patch","collection":"c","name":"n","patch":{"a":1},"expect_revision":3}.
    /// Ops: get, put (body, create), patch (patch, json_patch), delete, list;
    /// expect_revision and id are optional. Answers: {"id","ok":true,...} or
    /// {"id","ok":false,"error":{"kind","message","exit_code",...}}.
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
            eprintln!("revstore: {e}");
            ExitCode::from(e.exit_code())
        }
    }
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
            let rendered = error.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            let message = first.strip_prefix("error: ").unwrap_or(first);
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
    };
    let store = open_store(&store_url(cli.store)?)?;
    let is_read = matches!(op, Op::Get { .. } | Op::List { .. });
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
                "no store given: pass --store yaml:DIR, sqlite:FILE or memory:, or set {STORE_VAR}"
            ))),
            Err(VarError::NotUnicode(_)) => {
                Err(CliError::Usage(format!("{STORE_VAR} is not valid UTF-8")))
            }
        },
    }
}

/// Parses a body or patch argument; `None` or `-` reads stdin.
fn parse_text(arg: Option<&str>, what: &'static str) -> Result<Value, CliError> {
    let owned;
    let text = match arg {
        Some(text) if text != "-" => text,
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::io(format!("read the {what} from stdin"), e))?;
            owned = String::from_utf8(bytes).map_err(|e| TextError {
                what,
                reason: format!("stdin is not UTF-8: {e}"),
            })?;
            &owned
        }
    };
    Ok(text::parse_value(text, what)?)
}

/// The text a one-shot command prints: writes print the bare new revision;
/// `get` the body as YAML; `list` name and revision per line; `--json`
/// the outcome as one JSON line.
fn render(outcome: &Outcome, is_read: bool, json: bool) -> Result<String, CliError> {
    if json {
        return Ok(format!("{}\n", Value::Object(outcome.to_json())));
    }
    Ok(match outcome {
        Outcome::Document { body, .. } if is_read => text::to_yaml(&Value::Object(body.clone()))
            .map_err(|e| CliError::io("print the body as YAML", std::io::Error::other(e)))?,
        Outcome::Document { revision, .. } | Outcome::Deleted { revision, .. } => {
            format!("{revision}\n")
        }
        Outcome::Listed { entries, .. } => entries
            .iter()
            .map(|e| format!("{}\t{}\n", e.name, e.revision))
            .collect(),
    })
}

fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("write to stdout", e))
}

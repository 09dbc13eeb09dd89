//! The command line: clap definitions, one module per subcommand, and the
//! mapping of errors to exit statuses.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::core::config::{ToolSpec, Tuning};
use crate::core::framing::{Framing, NAMED, Named};
use crate::core::{Fatal, status};

mod client;
mod completions;
mod detect;
mod exec_tool;
mod kill;
mod logs;
mod ls;
mod quick;
mod restart;
mod run;
mod select;
mod serve;
mod start;

/// Make slow-starting command-line tools fast to call: the first call
/// starts a background server running the unchanged tool, every later call
/// streams its input through the warm tool.
#[derive(Debug, Parser)]
#[command(
    name = "viasock",
    version,
    max_term_width = 100,
    after_help = "`viasock --help` also gives the exit statuses and examples.",
    after_long_help = long_help()
)]
pub struct Cli {
    /// State directory for sockets, locks and logs [default: ./.viasock]. For
    /// ls, kill, restart and logs: only the servers of this directory (without
    /// it: every server of the user).
    #[arg(
        long,
        global = true,
        env = "VIASOCK_DIR",
        value_name = "DIR",
        value_hint = clap::ValueHint::DirPath
    )]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// A section of the long help: its heading in the help and in the man
/// page, and its lines, each a term and what it means.
type HelpSection = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// What `--help` and the man page add after the options.
const HELP_SECTIONS: [HelpSection; 3] = [
    (
        "Exit status of `viasock run`",
        "EXIT STATUS",
        &[
            ("0", "every input record was answered and written"),
            (
                "N",
                "the tool exited with N (not 0) while serving this call",
            ),
            ("128+S", "the tool was killed by signal S"),
            ("124", "a record was not answered within -w"),
            ("126/127", "the tool is not executable / not found"),
            ("65", "unfinished input record with a custom -t"),
            (
                "69",
                "the server could not be started or reached (also --no-spawn)",
            ),
            (
                "141",
                "stdout was closed (| head): ends quietly, as cat would",
            ),
            ("2", "bad usage, among them a bad -t/-T pattern"),
            ("1", "any other failure"),
            ("", "Other commands exit 0, 1 on failure, 2 on bad usage."),
        ],
    ),
    (
        "Environment",
        "ENVIRONMENT",
        &[
            ("VIASOCK_DIR", "the state directory (as --dir)"),
            (
                "VIASOCK_SERVER_TIMEOUT",
                "as -W, for every call that does not give it",
            ),
            ("VIASOCK_INSTANCES", "as -j"),
            (
                "VIASOCK_NO_SPAWN",
                "as --no-spawn when 1, yes or true (0, no, false: off)",
            ),
            (
                "VIASOCK_LOG",
                "the server log's level: info (default), debug, warn",
            ),
            (
                "NO_COLOR",
                "top without colours (its ! and !! marks say as much)",
            ),
        ],
    ),
    (
        "Examples",
        "EXAMPLES",
        &[
            (
                "",
                "viasock run --framing ispell hunspell -d en_US -a < words.txt",
            ),
            (
                "",
                "viasock run -t '^$' -T '^$' -P 1 java -jar parser.jar < doc.txt",
            ),
            ("", "viasock detect -- python3 tagger.py"),
            ("", "viasock ls; viasock top; viasock kill --all"),
        ],
    ),
];

/// [`HELP_SECTIONS`] as `--help` shows them.
fn long_help() -> String {
    let mut text = String::new();
    for (heading, _, lines) in HELP_SECTIONS {
        text.push_str(&format!("\n{heading}:\n"));
        for (term, what) in lines {
            match *term {
                "" => text.push_str(&format!("  {what}\n")),
                term => text.push_str(&format!("  {term:<23} {what}\n")),
            }
        }
    }
    text.trim().to_owned()
}

/// [`HELP_SECTIONS`] as man page sections, lines kept as they are.
fn man_sections() -> String {
    let mut roff = String::new();
    for (_, heading, lines) in HELP_SECTIONS {
        roff.push_str(&format!(".SH \"{heading}\"\n.nf\n"));
        for (term, what) in lines {
            let line = match *term {
                "" => what.to_string(),
                term => format!("{term:<23} {what}"),
            };
            // Roff escapes: a backslash, and a line that starts with a
            // control character.
            let line = line.replace('\\', "\\e");
            if line.starts_with(['.', '\'']) {
                roff.push_str("\\&");
            }
            roff.push_str(&line);
            roff.push('\n');
        }
        roff.push_str(".fi\n");
    }
    roff
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command through its server, starting the server if needed.
    #[command(override_usage = "viasock run [OPTIONS] [--] PROGRAM [ARGS]...")]
    Run(RunArgs),
    /// Run a server in the foreground (what `run` starts in the background).
    #[command(override_usage = "viasock serve [OPTIONS] [--socket PATH] [--] PROGRAM [ARGS]...")]
    Serve(ServeArgs),
    /// Stream stdin through the server listening at SOCKET.
    Client(ClientArgs),
    /// Start (or find) the server for a command; return once its tool runs.
    #[command(override_usage = "viasock start [OPTIONS] [--probe RECORD] [--] PROGRAM [ARGS]...")]
    Start(StartArgs),
    /// List servers.
    Ls(LsArgs),
    /// Stop servers.
    Kill(KillArgs),
    /// Replace a server's tool instances with fresh ones.
    Restart(RestartArgs),
    /// Show (and follow) a server's log.
    Logs(LogsArgs),
    /// A live monitor of the servers.
    Top,
    /// Run a tool directly, find how it frames its records, and print the
    /// checked `viasock run` command line that serves it.
    #[command(override_usage = "viasock detect [OPTIONS] [--] PROGRAM [ARGS]...")]
    Detect(DetectArgs),
    /// What a server runs in its tool's place (internal).
    #[command(name = "__exec-tool", hide = true)]
    ExecTool(ExecToolArgs),
    /// Print a shell completion script (for example:
    /// `viasock completions bash > ~/.local/share/bash-completion/completions/viasock`).
    Completions(CompletionsArgs),
    /// Print the manual page (roff), or write one page per command into
    /// a directory (for example: `viasock man | man -l -`).
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write viasock.1 and a viasock-COMMAND.1 for each command into DIR
    /// instead.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Sample records to give the tool, one per line [default: a few
    /// sentences, with empty lines between paragraphs].
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub input: Option<PathBuf>,

    /// Lines end with NUL, in the sample and in what the tool writes.
    #[arg(short = 'z', long)]
    pub null_data: bool,

    /// Longest wait for the tool to load, or to answer one line.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_secs, default_value = "30")]
    pub timeout: Duration,

    /// Print the findings as one JSON object.
    #[arg(long)]
    pub json: bool,

    /// The tool and its arguments, as they would follow `viasock run`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        num_args = 1..,
        value_name = "PROGRAM [ARGS]",
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ExecToolArgs {
    /// The server's pid: if the parent is another, the server is gone.
    #[arg(long)]
    pub parent: u32,

    /// Serve the tool with --fork: its stdin is the server's socket for
    /// the fork server, and this library is preloaded.
    #[arg(long, value_name = "PATH")]
    pub fork_library: Option<PathBuf>,

    #[arg(required = true, trailing_var_arg = true, num_args = 1.., allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args, PartialEq)]
pub struct RunArgs {
    #[command(flatten)]
    pub tool: ToolArgs,

    /// Fail (status 69) instead of starting a server.
    #[arg(
        long,
        env = "VIASOCK_NO_SPAWN",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_spawn: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub tool: ToolArgs,

    /// Socket to listen at [default: DIR/sockets/ID.sock].
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub socket: Option<PathBuf>,

    /// Write `ready` to stdout once listening (used by `run`).
    #[arg(long, hide = true)]
    pub notify_ready: bool,

    /// Stdin is a connection from the call that started this server: it is
    /// served first, and served even if the model changed (used by `run`).
    #[arg(long, hide = true)]
    pub caller_on_stdin: bool,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The server's socket.
    pub socket: PathBuf,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub tool: ToolArgs,

    /// Also send this record and wait for its answer (which is discarded).
    /// A final line end (newline, NUL with -z) is added if it has none; with a custom -t, give the
    /// whole record, terminator line included (for -t '^$': $'hello\n\n').
    #[arg(long, value_name = "RECORD")]
    pub probe: Option<String>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print the state objects as a JSON array.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// Print only the ids, one a line (for `xargs viasock kill`).
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Ids (any unique prefix) of the servers to stop.
    #[arg(required_unless_present_any = ["all", "stale"])]
    pub ids: Vec<String>,

    /// Stop every server.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,

    /// Clean up what dead servers left behind (socket, state, lock).
    #[arg(long, conflicts_with = "ids")]
    pub stale: bool,

    /// Do not wait for calls in flight.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Ids (any unique prefix) of the servers to restart.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Id (any unique prefix) of the server.
    pub id: String,

    /// Keep printing what is appended, across log rotation.
    #[arg(short, long)]
    pub follow: bool,

    /// Lines to show from the end.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub lines: usize,
}

/// The tool and the options that shape its server. Long names are
/// the original viasock's, so existing command lines keep working.
#[derive(Debug, Default, Args, PartialEq)]
pub struct ToolArgs {
    /// Regex: an input line matching it (at its start) ends a record; '' makes every line a record.
    #[arg(short = 't', long, value_name = "PATTERN")]
    pub input_terminator: Option<String>,

    /// Regex: the same for the tool's output.
    #[arg(short = 'T', long, value_name = "PATTERN")]
    pub output_terminator: Option<String>,

    /// Records the tool writes at start-up; every client receives them first.
    #[arg(short = 'P', long, value_name = "N")]
    pub output_prelude: Option<usize>,

    /// Lines the tool writes at start-up (a banner), each a record of its
    /// own whatever -T says; every client receives them first.
    #[arg(long, value_name = "N")]
    pub prelude_lines: Option<usize>,

    /// Lines end with NUL instead of newline, in input and output (as `sed -z`).
    #[arg(short = 'z', long)]
    pub null_data: bool,

    /// A named framing for a common shape; -t, -T, -P, --prelude-lines
    /// given beside it replace its part.
    #[arg(long, value_name = "NAME", value_parser = framing_names())]
    pub framing: Option<String>,

    /// Longest time the tool may take to answer one record, or to write its
    /// prelude (-P) once started; then it is killed (status 124).
    #[arg(short = 'w', long, value_name = "DURATION", value_parser = parse_secs)]
    pub process_timeout: Option<Duration>,

    /// Idle time after which a server stops; 0 never stops [default: 60].
    #[arg(
        short = 'W',
        long,
        env = "VIASOCK_SERVER_TIMEOUT",
        value_name = "DURATION",
        value_parser = parse_secs
    )]
    pub server_timeout: Option<Duration>,

    /// Most tool instances one server runs at once, for concurrent clients
    /// [default: 1]. A running server with fewer takes on more.
    #[arg(
        short = 'j',
        long,
        env = "VIASOCK_INSTANCES",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub instances: Option<u32>,

    /// Let concurrent clients share instances record by record.
    #[arg(long)]
    pub interleave: bool,

    /// Serve a one-shot tool (it reads all its input, then exits): the
    /// loaded tool is forked at its first read of stdin for every call,
    /// with the caller's own stdin, stdout and stderr, and its exit status
    /// is the call's. -j bounds the calls at once, -w each call.
    #[arg(long, conflicts_with_all = ["input_terminator", "output_terminator", "output_prelude", "prelude_lines", "null_data", "framing", "interleave"])]
    pub fork: bool,

    /// Extra file or directory whose change must give a new server (repeatable).
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::AnyPath)]
    pub watch: Vec<PathBuf>,

    /// Environment variable whose value belongs to the server's identity (repeatable).
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,

    /// Server log file [default: DIR/logs/ID.log].
    #[arg(short = 'l', long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub log: Option<PathBuf>,

    /// The tool and its arguments. Everything from PROGRAM on is the tool's
    /// and reaches it unchanged, whatever it looks like (`-l 5`, `--help`,
    /// `--`); viasock's own options go before PROGRAM. A `--` before PROGRAM
    /// ends viasock's options (needed only for a PROGRAM that starts with
    /// `-`).
    #[arg(
        required = true,
        trailing_var_arg = true,
        num_args = 1..,
        value_name = "PROGRAM [ARGS]",
        value_hint = clap::ValueHint::CommandWithArguments
    )]
    pub command: Vec<OsString>,
}

impl ToolArgs {
    /// The options as a [`ToolSpec`]; its patterns are not compiled yet
    /// (see [`Framing::check`]).
    pub fn spec(&self) -> Result<ToolSpec, Fatal> {
        let Some((program, args)) = self.command.split_first() else {
            return Err(Fatal::new(status::USAGE, "no PROGRAM given"));
        };
        Ok(ToolSpec {
            program: program.clone(),
            args: args.to_vec(),
            framing: self.framing(),
            process_timeout: self.process_timeout.filter(|d| !d.is_zero()),
            server_timeout: Some(self.server_timeout.unwrap_or(DEFAULT_SERVER_TIMEOUT))
                .filter(|d| !d.is_zero()),
            instances: self.instances.unwrap_or(1) as usize,
            interleave: self.interleave,
            fork: self.fork,
            watch: self.watch.clone(),
            env: self.env.clone(),
            log: self.log.clone(),
        })
    }

    /// The options as a [`ToolSpec`] whose patterns compile.
    pub fn checked_spec(&self) -> Result<ToolSpec, Fatal> {
        let spec = self.spec()?;
        spec.framing
            .check()
            .map_err(|why| Fatal::new(status::USAGE, why))?;
        Ok(spec)
    }
}

impl ToolArgs {
    /// The named framing, if any, with the options given beside it.
    fn framing(&self) -> Framing {
        let mut f = self
            .framing
            .as_deref()
            .and_then(Named::find)
            .map_or_else(Framing::default, Named::framing);
        if let Some(t) = &self.input_terminator {
            f.input_terminator = t.clone();
        }
        if let Some(t) = &self.output_terminator {
            f.output_terminator = t.clone();
        }
        if let Some(p) = self.output_prelude {
            f.prelude = p;
        }
        if let Some(p) = self.prelude_lines {
            f.prelude_lines = p;
        }
        f.null_data |= self.null_data;
        f
    }

    /// The tuning options this command line gave, to tell a server
    /// started with others.
    pub fn tuning(&self, cwd: &std::path::Path) -> Tuning {
        Tuning {
            instances: self.instances.map(|j| j as usize),
            server_timeout: self.server_timeout,
            interleave: self.interleave,
            log: self.log.as_ref().map(|l| cwd.join(l)),
        }
    }
}

/// How long a server stays without a call, unless `-W` says otherwise.
const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(60);

impl Cli {
    /// The state directory of `run`, `serve` and `start`.
    pub fn state_dir(&self) -> PathBuf {
        state_dir(self.dir.as_deref())
    }
}

/// The state directory `--dir` (or `VIASOCK_DIR`) names, `./.viasock` by
/// default.
fn state_dir(dir: Option<&std::path::Path>) -> PathBuf {
    dir.map_or_else(|| PathBuf::from(".viasock"), std::path::Path::to_owned)
}

/// `--framing` takes the names of [`NAMED`], each explained in `--help`.
fn framing_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(NAMED.iter().map(|n| {
        let help = format!("{}. Same as {}", n.about, n.framing());
        clap::builder::PossibleValue::new(n.name).help(help)
    }))
}

/// Longest time any option takes: a century, far beyond any wait a
/// server can mean, and short enough to add to any clock reading.
const MAX_SECS: f64 = 100.0 * 365.0 * 86_400.0;

/// Seconds (`90`, `1.5`) or a human duration (`90s`, `10m`, `1h30m`).
pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_nan() => return Err(format!("not a number of seconds: {s}")),
        // Not rounded down to 0, which would mean "never".
        Ok(secs) if secs > 0.0 && secs < 1e-9 => {
            return Err(format!("{s} s is less than a nanosecond"));
        }
        Ok(secs) if secs.is_finite() && secs <= MAX_SECS => Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("not a usable number of seconds: {s}"))?,
        Ok(_) => return Err(format!("{s} s is more than a century")),
        Err(_) => humantime::parse_duration(s).map_err(|_| {
            format!("not a duration: {s} (give seconds, or a duration such as 90s, 10m, 1h)")
        })?,
    };
    if d.as_secs_f64() > MAX_SECS {
        return Err(format!("{s} is more than a century"));
    }
    Ok(d)
}

fn parse_positive_secs(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        d if d.is_zero() => Err("must be more than 0".to_owned()),
        d => Ok(d),
    }
}

fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    // Made in memory first: clap's generator panics on a write error, and
    // `| head` is not an error.
    print_out(completions::script(shell).as_bytes())?;
    Ok(0)
}

/// The manual: `viasock(1)` on stdout, or every page into a directory.
fn man(args: &ManArgs) -> anyhow::Result<i32> {
    let cmd = <Cli as clap::CommandFactory>::command();
    let page = |cmd: clap::Command| -> std::io::Result<Vec<u8>> {
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut roff)?;
        Ok(roff)
    };
    // The top page: clap's sections, then ours in place of its reflowed
    // text.
    let top = |cmd: clap::Command| -> std::io::Result<Vec<u8>> {
        let man = clap_mangen::Man::new(cmd);
        let mut roff = Vec::new();
        man.render_title(&mut roff)?;
        man.render_name_section(&mut roff)?;
        man.render_synopsis_section(&mut roff)?;
        man.render_description_section(&mut roff)?;
        man.render_options_section(&mut roff)?;
        man.render_subcommands_section(&mut roff)?;
        roff.extend_from_slice(man_sections().as_bytes());
        man.render_version_section(&mut roff)?;
        Ok(roff)
    };
    let Some(dir) = &args.out else {
        print_out(&top(cmd)?)?;
        return Ok(0);
    };
    let write = |name: &str, roff: Vec<u8>| {
        let path = dir.join(name);
        std::fs::write(&path, roff)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    };
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("viasock-{}", sub.get_name());
        write(&format!("{name}.1"), page(sub.clone().name(name))?)?;
    }
    write("viasock.1", top(cmd)?)?;
    Ok(0)
}

/// Writes a command's whole output to stdout. A reader that went away
/// (`| head`) is no error: the command ends quietly, as `cat` does. Any
/// other failure (a full disk) is one, said in one line.
pub(crate) fn print_out(text: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write the output: {e}")),
        Ok(()) => Ok(()),
    }
}

/// A usage error in one line, `viasock: ...`, as every other failure:
/// clap's first line (without its `error: `), its tip, and the usage.
fn usage_error(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("bad usage");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    let mut extra = Vec::new();
    for l in lines {
        if let Some(tip) = l.strip_prefix("tip: ") {
            extra.push(tip.to_owned());
        } else if let Some(usage) = l.strip_prefix("Usage: ") {
            extra.push(format!("usage: {usage}"));
        } else if !l.starts_with("For more information") {
            // What the first line announces (a missing argument's name).
            out.push(' ');
            out.push_str(l);
        }
    }
    if !extra.is_empty() {
        out.push_str(&format!(" ({})", extra.join("; ")));
    }
    out
}

/// Parses the command line, runs the command and returns its exit status.
pub fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // Defaults set in the environment are clap's to read (and to refuse
    // with its message); the quick reader knows only VIASOCK_DIR.
    let env_defaults = [
        "VIASOCK_SERVER_TIMEOUT",
        "VIASOCK_INSTANCES",
        "VIASOCK_NO_SPAWN",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some());
    let quick = match env_defaults {
        true => None,
        false => quick::run(&argv, std::env::var_os("VIASOCK_DIR").as_deref()),
    };
    if let Some(q) = quick {
        return exit(run::run(&state_dir(q.dir.as_deref()), &q.args));
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "viasock: {}", usage_error(&e));
            return ExitCode::from(status::USAGE as u8);
        }
    };
    exit(match &cli.command {
        Command::Run(a) => run::run(&cli.state_dir(), a),
        Command::Serve(a) => serve::serve(&cli, a),
        Command::Client(a) => client::client(a),
        Command::Start(a) => start::start(&cli, a),
        Command::Ls(a) => ls::ls(&cli, a),
        Command::Kill(a) => kill::kill(&cli, a),
        Command::Restart(a) => restart::restart(&cli, a),
        Command::Logs(a) => logs::logs(&cli, a),
        Command::Top => crate::tui::run(select::scope(&cli)),
        Command::Detect(a) => detect::detect(a),
        Command::ExecTool(a) => exec_tool::exec_tool(a),
        Command::Completions(a) => completions(a.shell),
        Command::Man(a) => man(a),
    })
}

/// Prints a command's error, if any, and gives its exit status.
fn exit(result: anyhow::Result<i32>) -> ExitCode {
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<Fatal>()
                .map_or(status::FAILURE, |f| f.code);
            let _ = writeln!(std::io::stderr(), "viasock: {e:#}");
            code
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn original_viasock_command_line_parses() {
        let cli = Cli::try_parse_from([
            "viasock",
            "run",
            "--process-timeout",
            "60",
            "--server-timeout",
            "86400",
            "-t",
            "^$",
            "-T",
            "^$",
            "--log",
            "logs/parse",
            "--output-prelude",
            "1",
            "java",
            "-jar",
            "parser.jar",
            "--model",
            "models/en",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        let spec = r.tool.spec().unwrap();
        assert_eq!(spec.program, "java");
        assert_eq!(spec.args, ["-jar", "parser.jar", "--model", "models/en"]);
        assert_eq!(spec.framing.prelude, 1);
        assert_eq!(spec.process_timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn usage_errors_are_one_line() {
        for args in [
            &["viasock", "run"][..],
            &["viasock", "run", "--bogus", "cat"],
            &["viasock", "frob"],
            &["viasock", "run", "-j", "0", "cat"],
        ] {
            let e = Cli::try_parse_from(args).unwrap_err();
            let line = usage_error(&e);
            assert!(!line.contains('\n') && !line.starts_with("error"), "{line}");
            assert!(line.len() > 20, "{line}");
        }
        let e = Cli::try_parse_from(["viasock", "run"]).unwrap_err();
        assert!(
            usage_error(&e).contains("<PROGRAM [ARGS]>"),
            "{}",
            usage_error(&e)
        );
    }

    #[test]
    fn absurd_numbers_of_seconds_are_usage_errors() {
        assert!(parse_secs("1e19").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("x").is_err());
        assert_eq!(parse_secs("0").unwrap(), Duration::ZERO);
        assert!(parse_positive_secs("0").is_err());
        assert_eq!(parse_secs("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_secs("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_secs("200years").is_err());
        assert!(parse_secs("NaN").unwrap_err().contains("not a number"));
        assert!(parse_secs("1e-10").is_err(), "not rounded down to never");
        assert_eq!(
            parse_positive_secs("1.5").unwrap(),
            Duration::from_millis(1500)
        );
        for args in [["run", "-w", "1e19"], ["run", "-W", "inf"]] {
            let all = ["viasock"].into_iter().chain(args).chain(["cat"]);
            assert!(Cli::try_parse_from(all).is_err(), "{args:?}");
        }
    }

    fn framing_of(args: &[&str]) -> Framing {
        let cli =
            Cli::try_parse_from(["viasock", "run"].iter().chain(args).chain(&["cat"])).unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        r.tool.spec().unwrap().framing
    }

    #[test]
    fn a_named_framing_equals_its_options_and_options_beside_it_win() {
        assert_eq!(
            framing_of(&["--framing", "eos"]),
            framing_of(&["-T", "^EOS$"])
        );
        assert_eq!(
            framing_of(&["--framing", "ispell"]),
            framing_of(&["-T", "^$", "--prelude-lines", "1"])
        );
        assert_eq!(framing_of(&["--framing", "nul"]), framing_of(&["-z"]));
        let f = framing_of(&["--framing", "ispell", "--prelude-lines", "3", "-P", "1"]);
        assert_eq!((f.prelude_lines, f.prelude), (3, 1));
        assert_eq!(f.output_terminator, "^$");
        assert!(Cli::try_parse_from(["viasock", "run", "--framing", "nope", "cat"]).is_err());
    }
}

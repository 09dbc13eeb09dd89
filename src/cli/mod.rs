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
#[command(name = "viasock", version, max_term_width = 100)]
pub struct Cli {
    /// State directory for sockets, locks and logs [default: ./.viasock]. For
    /// ls, kill, restart and logs: only the servers of this directory (without
    /// it: every server of the user).
    #[arg(long, global = true, env = "VIASOCK_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
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
}

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// Sample records to give the tool, one per line [default: a few
    /// sentences, with empty lines between paragraphs].
    #[arg(long, value_name = "FILE")]
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
        value_name = "PROGRAM [ARGS]"
    )]
    pub command: Vec<OsString>,
}

#[derive(Debug, Args)]
pub struct ExecToolArgs {
    /// The server's pid: if the parent is another, the server is gone.
    #[arg(long)]
    pub parent: u32,

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
    #[arg(long)]
    pub no_spawn: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub tool: ToolArgs,

    /// Socket to listen at [default: DIR/sockets/ID.sock].
    #[arg(long, value_name = "PATH")]
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
    #[arg(long)]
    pub json: bool,
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
    #[arg(short = 'W', long, value_name = "DURATION", value_parser = parse_secs)]
    pub server_timeout: Option<Duration>,

    /// Most tool instances one server runs at once, for concurrent clients
    /// [default: 1]. A running server with fewer takes on more.
    #[arg(short = 'j', long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub instances: Option<u32>,

    /// Let concurrent clients share instances record by record.
    #[arg(long)]
    pub interleave: bool,

    /// Extra file or directory whose change must give a new server (repeatable).
    #[arg(long, value_name = "PATH")]
    pub watch: Vec<PathBuf>,

    /// Environment variable whose value belongs to the server's identity (repeatable).
    #[arg(long, value_name = "NAME")]
    pub env: Vec<String>,

    /// Server log file [default: DIR/logs/ID.log].
    #[arg(short = 'l', long, value_name = "PATH")]
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
        value_name = "PROGRAM [ARGS]"
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
    // Generated into memory first: the generator panics on a write error,
    // and `| head` is not an error.
    let mut script = Vec::new();
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "viasock", &mut script);
    match std::io::stdout().write_all(&script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
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
    if let Some(q) = quick::run(&argv, std::env::var_os("VIASOCK_DIR").as_deref()) {
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

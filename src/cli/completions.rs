//! `viasock completions SHELL`: clap's scripts, with two things its static
//! generators cannot do. The ids of running servers complete where a
//! command takes them (`kill`, `restart`, `logs`), from `viasock ls -q`
//! at the moment of completion; and what only viasock itself calls (the
//! hidden `__exec-tool` command and `serve`'s hidden flags) is not
//! offered. Both are edits of the generated text, shell by shell.

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

/// What is hidden from help, and so from completion: the hidden commands
/// by name, and the hidden flags of any command as `--flag`.
fn hidden(cmd: &clap::Command) -> Vec<String> {
    let mut words = Vec::new();
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() {
            words.push(sub.get_name().to_owned());
        }
        words.extend(
            sub.get_arguments()
                .filter(|a| a.is_hide_set())
                .filter_map(|a| a.get_long())
                .map(|l| format!("--{l}")),
        );
    }
    words
}

/// The commands that take server ids.
const TAKE_IDS: [&str; 3] = ["kill", "restart", "logs"];

/// The ids of the servers `viasock ls` lists, for the shell to run.
const LIST_IDS: &str = "viasock ls -q 2>/dev/null";

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let hidden = hidden(&cmd);
    let mut raw = Vec::new();
    clap_complete::generate(shell, &mut cmd, "viasock", &mut raw);
    let text = String::from_utf8_lossy(&raw);
    match shell {
        Shell::Bash => bash(&text, &hidden),
        Shell::Zsh => zsh(&text, &hidden),
        Shell::Fish => fish(&text, &hidden),
        _ => text.into_owned(),
    }
}

/// Bash: each command's words are an `opts="..."` line in the block of
/// its case arm (`viasock__subcmd__kill)`); the internal words leave
/// every such line, and the ids join the words of the commands that take
/// them.
fn bash(text: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut takes_ids = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(arm) = trimmed.strip_suffix(')') {
            takes_ids = TAKE_IDS
                .iter()
                .any(|c| arm == format!("viasock__subcmd__{c}"));
        }
        match trimmed
            .strip_prefix("opts=\"")
            .and_then(|o| o.strip_suffix('"'))
        {
            Some(words) => {
                let indent = &line[..line.len() - trimmed.len()];
                let mut kept: Vec<&str> = words
                    .split_whitespace()
                    .filter(|w| !hidden.iter().any(|h| h == w))
                    .collect();
                let ids = format!("$({LIST_IDS})");
                if takes_ids {
                    kept.push(&ids);
                }
                out.push_str(&format!("{indent}opts=\"{}\"\n", kept.join(" ")));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Zsh: an internal command or flag is one line of an `_arguments` or
/// `_describe` list; the ids' argument specs get an action of our own in
/// place of `_default`.
fn zsh(text: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    for line in text.lines() {
        let offered = hidden
            .iter()
            .any(|w| line.starts_with(&format!("'{w}[")) || line.starts_with(&format!("'{w}:")));
        if offered {
            continue;
        }
        let names_ids = line.starts_with("'*::ids -- ") || line.starts_with("':id -- ");
        if line.starts_with("if [ \"$funcstack[1]\" = \"_viasock\" ]") {
            out.push_str(&format!(
                "(( $+functions[_viasock_server_ids] )) ||\n_viasock_server_ids() {{\n    \
                 local -a ids\n    ids=(${{(f)\"$({LIST_IDS})\"}})\n    \
                 _describe -t ids 'server id' ids\n}}\n\n"
            ));
        }
        match line.strip_suffix(":_default' \\").filter(|_| names_ids) {
            Some(spec) => out.push_str(&format!("{spec}:_viasock_server_ids' \\\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Fish: one `complete` line per word; the internal ones go, and one line
/// per command that takes ids is added. A `$` that starts no variable
/// (clap leaves `'^$'` of a help text in double quotes) is escaped: fish
/// refuses the whole file otherwise.
fn fish(text: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(text.len() + 512);
    for line in fish_dollars(text).lines() {
        let internal = hidden.iter().any(|w| match w.strip_prefix("--") {
            Some(flag) => line.contains(&format!(" -l {flag} ")),
            None => {
                line.contains(&format!("-a \"{w}\""))
                    || line.contains(&format!("using_subcommand {w}\""))
            }
        });
        if !internal {
            out.push_str(line);
            out.push('\n');
        }
    }
    for command in TAKE_IDS {
        out.push_str(&format!(
            "complete -c viasock -n \"__fish_viasock_using_subcommand {command}\" -f -a \
             \"({LIST_IDS})\" -d 'server id'\n"
        ));
    }
    out
}

/// `text` with each `$` outside single quotes that is not followed by a
/// variable's name escaped.
fn fish_dollars(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quote = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            // An escaped character keeps its meaning, whatever it is.
            (Some('\'') | Some('"') | None, '\\') => {
                out.push(c);
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                continue;
            }
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if q == c => quote = None,
            (Some('\''), _) => {}
            (_, '$') => {
                let names = chars
                    .peek()
                    .is_some_and(|n| n.is_ascii_alphanumeric() || *n == '_');
                if !names {
                    out.push('\\');
                }
            }
            _ => {}
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_script_offers_what_only_viasock_calls() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(shell);
            let hidden = hidden(&Cli::command());
            for w in ["__exec-tool", "--notify-ready", "--caller-on-stdin"] {
                assert!(hidden.iter().any(|h| h == w), "{w} is hidden");
            }
            for w in hidden.iter().map(String::as_str) {
                let offered = match shell {
                    Shell::Bash => s
                        .lines()
                        .filter(|l| l.trim_start().starts_with("opts="))
                        .any(|l| l.split_whitespace().any(|x| x.trim_matches('"') == w)),
                    Shell::Zsh => s.lines().any(|l| {
                        l.starts_with(&format!("'{w}[")) || l.starts_with(&format!("'{w}:"))
                    }),
                    _ => s.lines().any(|l| {
                        l.contains(&format!("-a \"{w}\""))
                            || l.contains(&format!(" -l {} ", w.trim_start_matches('-')))
                    }),
                };
                assert!(!offered, "{shell} offers {w}");
            }
        }
    }

    #[test]
    fn every_script_completes_server_ids_for_the_commands_that_take_them() {
        let bash = script(Shell::Bash);
        for c in TAKE_IDS {
            let block = bash
                .split(&format!("        viasock__subcmd__{c})\n"))
                .nth(1)
                .unwrap_or_else(|| panic!("no {c} block"));
            let opts = block.lines().next().unwrap();
            assert!(opts.contains(LIST_IDS), "bash {c}: {opts}");
        }
        // Another command's words are as clap made them.
        let ls = bash.split("        viasock__subcmd__ls)\n").nth(1).unwrap();
        assert!(!ls.lines().next().unwrap().contains(LIST_IDS));

        let zsh = script(Shell::Zsh);
        assert_eq!(zsh.matches(":_viasock_server_ids' \\").count(), 3, "{zsh}");
        assert!(zsh.contains("_viasock_server_ids() {"));

        let fish = script(Shell::Fish);
        for c in TAKE_IDS {
            assert!(
                fish.contains(&format!("using_subcommand {c}\" -f -a \"({LIST_IDS})\"")),
                "fish {c}"
            );
        }
    }

    #[test]
    fn a_dollar_in_a_fish_string_is_escaped_unless_it_names_a_variable() {
        assert_eq!(
            fish_dollars("-a \"x '^$' \\'^$\\' y\" $cmd $argv[1] ^EOS$"),
            "-a \"x '^\\$' \\'^\\$\\' y\" $cmd $argv[1] ^EOS\\$"
        );
        // In single quotes a `$` is only a `$`.
        assert_eq!(fish_dollars("-d 'a $ b \\' $'"), "-d 'a $ b \\' $'");
    }
}

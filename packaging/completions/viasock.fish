# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_viasock_global_optspecs
    string join \n dir= h/help V/version
end

function __fish_viasock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_viasock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_viasock_using_subcommand
    set -l cmd (__fish_viasock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c viasock -n "__fish_viasock_needs_command" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viasock -n "__fish_viasock_needs_command" -s V -l version -d 'Print version'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "run" -d 'Run a command through its server, starting the server if needed'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "serve" -d 'Run a server in the foreground (what `run` starts in the background)'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "client" -d 'Stream stdin through the server listening at SOCKET'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "start" -d 'Start (or find) the server for a command; return once its tool runs'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "ls" -d 'List servers'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "kill" -d 'Stop servers'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "restart" -d 'Replace a server\'s tool instances with fresh ones'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "logs" -d 'Show (and follow) a server\'s log'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "top" -d 'A live monitor of the servers'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "detect" -d 'Run a tool directly, find how it frames its records, and print the checked `viasock run` command line that serves it'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "completions" -d 'Print a shell completion script (for example: `viasock completions bash > ~/.local/share/bash-completion/completions/viasock`)'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "man" -d 'Print the manual page (roff), or write one page per command into a directory (for example: `viasock man | man -l -`)'
complete -c viasock -n "__fish_viasock_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viasock -n "__fish_viasock_using_subcommand run" -s t -l input-terminator -d 'Regex: an input line matching it (at its start) ends a record; \'\' makes every line a record' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -s T -l output-terminator -d 'Regex: the same for the tool\'s output' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -s P -l output-prelude -d 'Records the tool writes at start-up; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -l prelude-lines -d 'Lines the tool writes at start-up (a banner), each a record of its own whatever -T says; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -l framing -d 'A named framing for a common shape; -t, -T, -P, --prelude-lines given beside it replace its part' -r -f -a "lines\t'every line is a record, both ways (the default). Same as -t \'\' -T \'\''
blank\t'records end with an empty line, both ways (paragraphs, CoNLL sentences). Same as -t \'^\$\' -T \'^\$\''
blank-answers\t'every input line is a record; answers end with an empty line. Same as -T \'^\$\''
ispell\t'ispell pipe mode (hunspell -a, aspell -a): a one-line banner, answers ending with an empty line. Same as -T \'^\$\' --prelude-lines 1'
eos\t'every input line is a record; answers end with an `EOS` line (MeCab, JUMAN). Same as -T \'^EOS\$\''
nul\t'every record ends with a NUL byte, both ways (null-flush modes). Same as -z'"
complete -c viasock -n "__fish_viasock_using_subcommand run" -s w -l process-timeout -d 'Longest time the tool may take to answer one record, or to write its prelude (-P) once started; then it is killed (status 124)' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -s W -l server-timeout -d 'Idle time after which a server stops; 0 never stops [default: 60]' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -s j -l instances -d 'Most tool instances one server runs at once, for concurrent clients [default: 1]. A running server with fewer takes on more' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -l watch -d 'Extra file or directory whose change must give a new server (repeatable)' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand run" -l env -d 'Environment variable whose value belongs to the server\'s identity (repeatable)' -r
complete -c viasock -n "__fish_viasock_using_subcommand run" -s l -l log -d 'Server log file [default: DIR/logs/ID.log]' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand run" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand run" -s z -l null-data -d 'Lines end with NUL instead of newline, in input and output (as `sed -z`)'
complete -c viasock -n "__fish_viasock_using_subcommand run" -l interleave -d 'Let concurrent clients share instances record by record'
complete -c viasock -n "__fish_viasock_using_subcommand run" -l fork -d 'Serve a one-shot tool (it reads all its input, then exits): the loaded tool is forked at its first read of stdin for every call, with the caller\'s own stdin, stdout and stderr, and its exit status is the call\'s. -j bounds the calls at once, -w each call'
complete -c viasock -n "__fish_viasock_using_subcommand run" -l no-spawn -d 'Fail (status 69) instead of starting a server'
complete -c viasock -n "__fish_viasock_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s t -l input-terminator -d 'Regex: an input line matching it (at its start) ends a record; \'\' makes every line a record' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s T -l output-terminator -d 'Regex: the same for the tool\'s output' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s P -l output-prelude -d 'Records the tool writes at start-up; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l prelude-lines -d 'Lines the tool writes at start-up (a banner), each a record of its own whatever -T says; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l framing -d 'A named framing for a common shape; -t, -T, -P, --prelude-lines given beside it replace its part' -r -f -a "lines\t'every line is a record, both ways (the default). Same as -t \'\' -T \'\''
blank\t'records end with an empty line, both ways (paragraphs, CoNLL sentences). Same as -t \'^\$\' -T \'^\$\''
blank-answers\t'every input line is a record; answers end with an empty line. Same as -T \'^\$\''
ispell\t'ispell pipe mode (hunspell -a, aspell -a): a one-line banner, answers ending with an empty line. Same as -T \'^\$\' --prelude-lines 1'
eos\t'every input line is a record; answers end with an `EOS` line (MeCab, JUMAN). Same as -T \'^EOS\$\''
nul\t'every record ends with a NUL byte, both ways (null-flush modes). Same as -z'"
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s w -l process-timeout -d 'Longest time the tool may take to answer one record, or to write its prelude (-P) once started; then it is killed (status 124)' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s W -l server-timeout -d 'Idle time after which a server stops; 0 never stops [default: 60]' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s j -l instances -d 'Most tool instances one server runs at once, for concurrent clients [default: 1]. A running server with fewer takes on more' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l watch -d 'Extra file or directory whose change must give a new server (repeatable)' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l env -d 'Environment variable whose value belongs to the server\'s identity (repeatable)' -r
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s l -l log -d 'Server log file [default: DIR/logs/ID.log]' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l socket -d 'Socket to listen at [default: DIR/sockets/ID.sock]' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s z -l null-data -d 'Lines end with NUL instead of newline, in input and output (as `sed -z`)'
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l interleave -d 'Let concurrent clients share instances record by record'
complete -c viasock -n "__fish_viasock_using_subcommand serve" -l fork -d 'Serve a one-shot tool (it reads all its input, then exits): the loaded tool is forked at its first read of stdin for every call, with the caller\'s own stdin, stdout and stderr, and its exit status is the call\'s. -j bounds the calls at once, -w each call'
complete -c viasock -n "__fish_viasock_using_subcommand serve" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viasock -n "__fish_viasock_using_subcommand client" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand client" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand start" -s t -l input-terminator -d 'Regex: an input line matching it (at its start) ends a record; \'\' makes every line a record' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -s T -l output-terminator -d 'Regex: the same for the tool\'s output' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -s P -l output-prelude -d 'Records the tool writes at start-up; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -l prelude-lines -d 'Lines the tool writes at start-up (a banner), each a record of its own whatever -T says; every client receives them first' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -l framing -d 'A named framing for a common shape; -t, -T, -P, --prelude-lines given beside it replace its part' -r -f -a "lines\t'every line is a record, both ways (the default). Same as -t \'\' -T \'\''
blank\t'records end with an empty line, both ways (paragraphs, CoNLL sentences). Same as -t \'^\$\' -T \'^\$\''
blank-answers\t'every input line is a record; answers end with an empty line. Same as -T \'^\$\''
ispell\t'ispell pipe mode (hunspell -a, aspell -a): a one-line banner, answers ending with an empty line. Same as -T \'^\$\' --prelude-lines 1'
eos\t'every input line is a record; answers end with an `EOS` line (MeCab, JUMAN). Same as -T \'^EOS\$\''
nul\t'every record ends with a NUL byte, both ways (null-flush modes). Same as -z'"
complete -c viasock -n "__fish_viasock_using_subcommand start" -s w -l process-timeout -d 'Longest time the tool may take to answer one record, or to write its prelude (-P) once started; then it is killed (status 124)' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -s W -l server-timeout -d 'Idle time after which a server stops; 0 never stops [default: 60]' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -s j -l instances -d 'Most tool instances one server runs at once, for concurrent clients [default: 1]. A running server with fewer takes on more' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -l watch -d 'Extra file or directory whose change must give a new server (repeatable)' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand start" -l env -d 'Environment variable whose value belongs to the server\'s identity (repeatable)' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -s l -l log -d 'Server log file [default: DIR/logs/ID.log]' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand start" -l probe -d 'Also send this record and wait for its answer (which is discarded). A final line end (newline, NUL with -z) is added if it has none; with a custom -t, give the whole record, terminator line included (for -t \'^\$\': \$\'hello\\n\\n\')' -r
complete -c viasock -n "__fish_viasock_using_subcommand start" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand start" -s z -l null-data -d 'Lines end with NUL instead of newline, in input and output (as `sed -z`)'
complete -c viasock -n "__fish_viasock_using_subcommand start" -l interleave -d 'Let concurrent clients share instances record by record'
complete -c viasock -n "__fish_viasock_using_subcommand start" -l fork -d 'Serve a one-shot tool (it reads all its input, then exits): the loaded tool is forked at its first read of stdin for every call, with the caller\'s own stdin, stdout and stderr, and its exit status is the call\'s. -j bounds the calls at once, -w each call'
complete -c viasock -n "__fish_viasock_using_subcommand start" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c viasock -n "__fish_viasock_using_subcommand ls" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand ls" -l json -d 'Print the state objects as a JSON array'
complete -c viasock -n "__fish_viasock_using_subcommand ls" -s q -l quiet -d 'Print only the ids, one a line (for `xargs viasock kill`)'
complete -c viasock -n "__fish_viasock_using_subcommand ls" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand kill" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand kill" -l all -d 'Stop every server'
complete -c viasock -n "__fish_viasock_using_subcommand kill" -l stale -d 'Clean up what dead servers left behind (socket, state, lock)'
complete -c viasock -n "__fish_viasock_using_subcommand kill" -l force -d 'Do not wait for calls in flight'
complete -c viasock -n "__fish_viasock_using_subcommand kill" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand restart" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand restart" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand logs" -s n -l lines -d 'Lines to show from the end' -r
complete -c viasock -n "__fish_viasock_using_subcommand logs" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand logs" -s f -l follow -d 'Keep printing what is appended, across log rotation'
complete -c viasock -n "__fish_viasock_using_subcommand logs" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand top" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand top" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand detect" -l input -d 'Sample records to give the tool, one per line [default: a few sentences, with empty lines between paragraphs]' -r -F
complete -c viasock -n "__fish_viasock_using_subcommand detect" -l timeout -d 'Longest wait for the tool to load, or to answer one line' -r
complete -c viasock -n "__fish_viasock_using_subcommand detect" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand detect" -s z -l null-data -d 'Lines end with NUL, in the sample and in what the tool writes'
complete -c viasock -n "__fish_viasock_using_subcommand detect" -l json -d 'Print the findings as one JSON object'
complete -c viasock -n "__fish_viasock_using_subcommand detect" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand completions" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand completions" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand man" -l out -d 'Write viasock.1 and a viasock-COMMAND.1 for each command into DIR instead' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand man" -l dir -d 'State directory for sockets, locks and logs [default: ./.viasock]. For ls, kill, restart and logs: only the servers of this directory (without it: every server of the user)' -r -f -a "(__fish_complete_directories)"
complete -c viasock -n "__fish_viasock_using_subcommand man" -s h -l help -d 'Print help'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "run" -d 'Run a command through its server, starting the server if needed'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "serve" -d 'Run a server in the foreground (what `run` starts in the background)'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "client" -d 'Stream stdin through the server listening at SOCKET'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "start" -d 'Start (or find) the server for a command; return once its tool runs'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "ls" -d 'List servers'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "kill" -d 'Stop servers'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "restart" -d 'Replace a server\'s tool instances with fresh ones'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "logs" -d 'Show (and follow) a server\'s log'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "top" -d 'A live monitor of the servers'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "detect" -d 'Run a tool directly, find how it frames its records, and print the checked `viasock run` command line that serves it'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "completions" -d 'Print a shell completion script (for example: `viasock completions bash > ~/.local/share/bash-completion/completions/viasock`)'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "man" -d 'Print the manual page (roff), or write one page per command into a directory (for example: `viasock man | man -l -`)'
complete -c viasock -n "__fish_viasock_using_subcommand help; and not __fish_seen_subcommand_from run serve client start ls kill restart logs top detect __exec-tool completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c viasock -n "__fish_viasock_using_subcommand kill" -f -a "(viasock ls -q 2>/dev/null)" -d 'server id'
complete -c viasock -n "__fish_viasock_using_subcommand restart" -f -a "(viasock ls -q 2>/dev/null)" -d 'server id'
complete -c viasock -n "__fish_viasock_using_subcommand logs" -f -a "(viasock ls -q 2>/dev/null)" -d 'server id'

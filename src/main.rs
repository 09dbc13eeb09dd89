fn main() -> std::process::ExitCode {
    viasock::cli::main()
}

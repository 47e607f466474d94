//! The `mission-bus` command. All the work happens in [`cli::run`].

mod cli;

fn main() {
    std::process::exit(cli::run(std::env::args_os()));
}

//! The command line of every service, through clap: generated `--help` (which lists the
//! settings the service reads), and a wrong argument reported in one line naming it.
//!
//! The settings themselves are read through [`crate::Settings`], not clap's `env`: they
//! may come from `VCAP_SERVICES` credentials too, which clap cannot see.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

/// Why the command line gives no arguments to run with: the text to print, where, and
/// the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--help` or `--version`: printed on stdout, exit 0.
    Info(String),
    /// A wrong argument: one line on stderr naming it, exit 2.
    Usage(String),
}

impl Stop {
    /// Prints the text and gives the exit code.
    pub fn exit(self) -> ExitCode {
        match self {
            Stop::Info(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Stop::Usage(line) => {
                eprintln!("{line}");
                ExitCode::from(2)
            }
        }
    }
}

/// Parses the process' arguments (see [`parse_from`]).
pub fn parse<T: Parser>(settings: &[&str]) -> Result<T, Stop> {
    parse_from(std::env::args_os(), settings)
}

/// Parses `args` (the first is the program) into `T`; `settings` are listed at the end
/// of `--help`.
pub fn parse_from<T, I, A>(args: I, settings: &[&str]) -> Result<T, Stop>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<OsString> + Clone,
{
    // The names, wrapped at 80 columns.
    let mut listing = String::new();
    let mut width = 0;
    for name in settings {
        if width > 0 && width + 1 + name.len() > 78 {
            listing.push_str("\n  ");
            width = 0;
        } else if width > 0 {
            listing.push(' ');
            width += 1;
        }
        listing.push_str(name);
        width += name.len();
    }
    let command = T::command().after_help(format!(
        "Settings, from the environment or a user-provided service's credentials in \
         VCAP_SERVICES:\n  {}",
        listing
    ));
    let name = command.get_name().to_owned();
    let matches = command
        .try_get_matches_from(args)
        .map_err(|e| stop(&name, &e))?;
    T::from_arg_matches(&matches).map_err(|e| stop(&name, &e))
}

fn stop(name: &str, e: &clap::Error) -> Stop {
    use clap::error::ErrorKind;
    let text = e.to_string();
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Stop::Info(text),
        _ => {
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            Stop::Usage(format!("{name}: {first} (see {name} --help)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line like a service's.
    #[derive(Debug, Parser)]
    #[command(name = "svc", version)]
    struct Cli {
        /// Do it once.
        #[arg(long, conflicts_with = "forever")]
        once: bool,
        /// Do it forever.
        #[arg(long)]
        forever: bool,
    }

    fn parse(args: &[&str]) -> Result<Cli, Stop> {
        parse_from(
            std::iter::once("svc").chain(args.iter().copied()),
            &["PORT", "RUST_LOG"],
        )
    }

    #[test]
    fn a_wrong_argument_is_one_line_naming_it() {
        for (args, named) in [
            (&["--frobnicate"][..], "--frobnicate"),
            (&["extra"][..], "extra"),
            (&["--once", "--forever"][..], "--forever"),
        ] {
            let Err(Stop::Usage(line)) = parse(args) else {
                panic!("{args:?} parsed")
            };
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(line.starts_with("svc: ") && line.contains(named), "{line}");
        }
    }

    #[test]
    fn help_is_generated_and_lists_the_settings() {
        let Err(Stop::Info(help)) = parse(&["--help"]) else {
            panic!("no help")
        };
        assert!(
            help.contains("--once") && help.contains("Do it once"),
            "{help}"
        );
        assert!(help.contains("PORT RUST_LOG"), "{help}");
        assert!(matches!(parse(&["--version"]), Err(Stop::Info(_))));
        assert!(parse(&["--once"]).unwrap().once);
    }
}

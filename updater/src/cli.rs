//! The updater's command line.

use clap::Parser;

/// Keeps every bound app's Prometheus target file true to the Cloud Controller. Without
/// arguments: a full reconcile pass at start and on the schedule, the audit-event fast
/// path in between, `/health` and `/metrics` on PORT.
#[derive(Debug, Parser)]
#[command(name = "updater", version)]
pub struct Cli {
    /// One full pass; exit 0 when it succeeded, 1 otherwise.
    #[arg(long, conflicts_with = "import_bindings")]
    pub once: bool,
    /// Print the plan of a full pass and change nothing; with --import-bindings, list
    /// what the import would record.
    #[arg(long)]
    pub dry_run: bool,
    /// Record the instances and bindings of our plan that the Cloud Controller has and
    /// the database lacks (the cut-over from another broker); needs SERVICE_ID and
    /// PLAN_ID.
    #[arg(long)]
    pub import_bindings: bool,
}

/// What the updater does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Serve,
    Once,
    DryRun,
    Import { dry_run: bool },
}

impl Cli {
    pub fn mode(&self) -> Mode {
        match (self.import_bindings, self.dry_run, self.once) {
            (true, dry_run, _) => Mode::Import { dry_run },
            // A dry run changes nothing, once or not.
            (false, true, _) => Mode::DryRun,
            (false, false, true) => Mode::Once,
            (false, false, false) => Mode::Serve,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_service::cli::{Stop, parse_from};

    fn mode(args: &[&str]) -> Result<Mode, Stop> {
        parse_from::<Cli, _, _>(std::iter::once("updater").chain(args.iter().copied()), &[])
            .map(|cli| cli.mode())
    }

    #[test]
    fn each_mode_has_its_flags_in_any_order() {
        assert_eq!(mode(&[]), Ok(Mode::Serve));
        assert_eq!(mode(&["--once"]), Ok(Mode::Once));
        assert_eq!(mode(&["--dry-run"]), Ok(Mode::DryRun));
        assert_eq!(mode(&["--once", "--dry-run"]), Ok(Mode::DryRun));
        assert_eq!(
            mode(&["--import-bindings"]),
            Ok(Mode::Import { dry_run: false })
        );
        for args in [
            &["--import-bindings", "--dry-run"][..],
            &["--dry-run", "--import-bindings"][..],
        ] {
            assert_eq!(mode(args), Ok(Mode::Import { dry_run: true }), "{args:?}");
        }
    }

    #[test]
    fn once_and_import_do_not_combine_and_unknown_flags_are_named() {
        for (args, named) in [
            (&["--once", "--import-bindings"][..], "--import-bindings"),
            (&["--frobnicate"][..], "--frobnicate"),
        ] {
            let Err(Stop::Usage(line)) = mode(args) else {
                panic!("{args:?} parsed")
            };
            assert_eq!(line.lines().count(), 1, "{line}");
            assert!(
                line.starts_with("updater: ") && line.contains(named),
                "{line}"
            );
        }
    }
}

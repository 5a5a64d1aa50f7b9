//! `wharf completions SHELL`: the shell's completion script for every verb and flag, made by
//! clap_complete from the command line itself, so it never falls behind.

use clap_complete::Shell;

/// The name the scripts complete.
const BINARY: &str = "wharf";

/// The completion script of `shell` for `command_line`.
pub fn script(shell: Shell, mut command_line: clap::Command) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command_line, BINARY, &mut script);
    script
}

/// Prints the completion script of `shell` on standard output.
pub fn print(shell: Shell, command_line: clap::Command) {
    use std::io::Write;
    let script = script(shell, command_line);
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`wharf completions bash | head`) is no failure of Wharf's.
    let _ = stdout.write_all(&script).and_then(|()| stdout.flush());
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap_complete::Shell;

    use super::script;
    use crate::Cli;

    #[test]
    fn each_shell_gets_a_script_that_names_the_verbs() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(script(shell, Cli::command())).unwrap();
            for verb in [
                "service",
                "deploy",
                "backup",
                "restore",
                "doctor",
                "completions",
            ] {
                assert!(
                    script.contains(verb),
                    "the {shell} script does not name {verb}"
                );
            }
            assert!(
                script.contains("data-dir"),
                "the {shell} script lacks flags"
            );
        }
    }

    #[test]
    fn each_script_is_written_for_its_shell() {
        let bash = String::from_utf8(script(Shell::Bash, Cli::command())).unwrap();
        assert!(bash.contains("complete -F"), "{bash}");
        let zsh = String::from_utf8(script(Shell::Zsh, Cli::command())).unwrap();
        assert!(zsh.starts_with("#compdef wharf"), "{zsh}");
        let fish = String::from_utf8(script(Shell::Fish, Cli::command())).unwrap();
        assert!(fish.contains("complete -c wharf"), "{fish}");
    }
}

//! Secrets a verb reads from standard input rather than its command line, where every user of
//! the machine could read them in the process list and they would stay in the shell's history.

use std::io::Read;

use anyhow::Context;

/// The first line of standard input, without its line ending; `what` names it in errors.
pub(super) fn line(what: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(!line.is_empty(), "no {what} on standard input");
    Ok(line)
}

/// All of standard input, less one final line ending (so `echo` and files ending in a newline
/// give the value itself, and a multi-line value such as a key keeps its lines).
pub(super) fn all(what: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {what} from standard input"))?;
    Ok(without_final_line_ending(text))
}

fn without_final_line_ending(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_final_line_ending_goes_and_the_lines_before_it_stay() {
        assert_eq!(without_final_line_ending("s3cret\n".into()), "s3cret");
        assert_eq!(without_final_line_ending("s3cret\r\n".into()), "s3cret");
        assert_eq!(without_final_line_ending("s3cret".into()), "s3cret");
        assert_eq!(
            without_final_line_ending("-----BEGIN-----\nabc\n-----END-----\n\n".into()),
            "-----BEGIN-----\nabc\n-----END-----\n"
        );
    }
}

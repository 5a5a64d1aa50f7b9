//! The one parser of a compose file, which both views read: the file's size, its YAML (one
//! document, each key of a mapping once), and compose's `<<` merge keys.

use serde_yaml_ng::Value;

/// The largest compose file Wharf reads.
pub const MAX_COMPOSE_BYTES: usize = 1024 * 1024;

/// Why a compose file could not be read at all.
#[derive(Debug)]
pub(super) enum ParseError {
    /// The text is longer than [`MAX_COMPOSE_BYTES`].
    TooLarge,
    /// The text is not one YAML document, repeats a key, or has a merge key that does not merge
    /// mappings.
    NotYaml(serde_yaml_ng::Error),
}

/// A compose file read as a YAML document.
pub(super) struct ComposeFile {
    document: Value,
}

impl ComposeFile {
    pub(super) fn parse(text: &str) -> Result<ComposeFile, ParseError> {
        if text.len() > MAX_COMPOSE_BYTES {
            return Err(ParseError::TooLarge);
        }
        let document = serde_yaml_ng::from_str(text).map_err(ParseError::NotYaml)?;
        Ok(ComposeFile { document })
    }

    /// The document as written: a `<<` key is a key like any other.
    pub(super) fn as_written(&self) -> &Value {
        &self.document
    }

    /// The document as compose reads it: what a `<<` merge key names is merged into the
    /// mapping that holds it, whose own keys win.
    pub(super) fn merged(mut self) -> Result<Value, ParseError> {
        self.document.apply_merge().map_err(ParseError::NotYaml)?;
        Ok(self.document)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_yaml_document_within_the_size_limit() {
        assert!(matches!(
            ComposeFile::parse(&"#".repeat(MAX_COMPOSE_BYTES + 1)),
            Err(ParseError::TooLarge)
        ));
        for text in ["services: [", "a: 1\na: 2\n", "a: 1\n---\nb: 2\n"] {
            assert!(
                matches!(ComposeFile::parse(text), Err(ParseError::NotYaml(_))),
                "{text}"
            );
        }
        let merged = |text: &str| ComposeFile::parse(text).and_then(ComposeFile::merged);
        let file = ComposeFile::parse("x: &x {a: 1, b: 2}\ny:\n  <<: *x\n  b: 3\n").unwrap();
        assert!(file.as_written()["y"].get("a").is_none());
        let document = file.merged().unwrap();
        assert_eq!(document["y"]["a"], Value::from(1));
        assert_eq!(document["y"]["b"], Value::from(3));
        assert!(matches!(
            merged("y:\n  <<: 5\n"),
            Err(ParseError::NotYaml(_))
        ));
    }
}

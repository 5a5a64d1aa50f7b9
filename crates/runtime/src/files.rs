//! Files that hold secrets (tokens, keys, registry logins): written readable by their owner
//! only, from the moment they exist.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `contents` to `path` (replacing it), with mode 0600 from creation on.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_the_owner_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        super::write_private_file(&path, b"first").unwrap();
        super::write_private_file(&path, b"2nd").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"2nd");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

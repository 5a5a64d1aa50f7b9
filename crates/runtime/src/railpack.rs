//! Railpack, which builds an image from a repository that has no Dockerfile by looking at what
//! it holds. Its CLI builds through BuildKit (found by `BUILDKIT_HOST`, from the agent's
//! environment) and hands the image to `docker load`.

use std::path::Path;

use crate::process::CommandSpec;

/// `railpack build` of `context` into the local image `image`, with `build_args` as build-time
/// variables. The values go on the command line, so they must not be secrets.
pub fn build(
    program: &Path,
    image: &str,
    build_args: &[(String, String)],
    context: &Path,
) -> CommandSpec {
    let mut command = CommandSpec::new(&program.to_string_lossy())
        .args(["build", "--name"])
        .arg(image)
        .args(["--progress", "plain"]);
    for (name, value) in build_args {
        command = command.arg("--env").arg(format!("{name}={value}"));
    }
    // Railpack's CLI takes no `--`; an absolute path cannot be read as an option.
    debug_assert!(context.is_absolute());
    command.arg(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_name_the_image_and_pass_arguments_as_variables() {
        let command = build(
            Path::new("/usr/local/bin/railpack"),
            "127.0.0.1:5000/default/web:abc",
            &[("GREETING".to_owned(), "hello there".to_owned())],
            Path::new("/work/build-1/src"),
        );
        assert_eq!(
            command.display(),
            "/usr/local/bin/railpack build --name 127.0.0.1:5000/default/web:abc --progress plain --env \"GREETING=hello there\" /work/build-1/src"
        );
    }
}

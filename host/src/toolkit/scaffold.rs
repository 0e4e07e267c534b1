//! `wafer plugin new`: a plugin project that builds and passes its own test as
//! generated.
//!
//! The project is self-contained: besides the templates (`host/templates/`) it
//! gets `wit/wafer.wit` and the language's SDK under `guest-sdk/<lang>/`,
//! written from copies embedded in this binary at build time from the
//! repository's own `wit/` and `guest-sdk/` (so git holds one source of each).
//! The relative layout is the repository's, so the SDKs find the WIT where
//! they expect it, and the project works the same wherever it lives and
//! whichever way `wafer` was installed.

use std::path::{Path, PathBuf};

use super::{Language, ToolkitError};

/// The plugin contract, as this binary's host implements it.
pub const WIT: &str = include_str!("../../../wit/wafer.wit");

/// A file written into a new project: path and text. Templates may hold
/// placeholders (see [`Names`]); verbatim files are written as they are.
type File = (&'static str, &'static str);

const RUST: &[File] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
    ),
];

const RUST_VERBATIM: &[File] = &[
    // The versions Wafer's own plugins are built and tested with.
    ("Cargo.lock", include_str!("../../../plugins/Cargo.lock")),
    (
        "rust-toolchain.toml",
        include_str!("../../../rust-toolchain.toml"),
    ),
    (
        "guest-sdk/rust/Cargo.toml",
        include_str!("../../../guest-sdk/rust/Cargo.toml"),
    ),
    (
        "guest-sdk/rust/src/lib.rs",
        include_str!("../../../guest-sdk/rust/src/lib.rs"),
    ),
    (
        "guest-sdk/rust/src/columns.rs",
        include_str!("../../../guest-sdk/rust/src/columns.rs"),
    ),
    (
        "guest-sdk/rust/src/describe.rs",
        include_str!("../../../guest-sdk/rust/src/describe.rs"),
    ),
    (
        "guest-sdk/rust/src/glue.rs",
        include_str!("../../../guest-sdk/rust/src/glue.rs"),
    ),
    (
        "guest-sdk/rust/src/log.rs",
        include_str!("../../../guest-sdk/rust/src/log.rs"),
    ),
    (
        "guest-sdk/rust/src/value.rs",
        include_str!("../../../guest-sdk/rust/src/value.rs"),
    ),
];

const PYTHON: &[File] = &[
    (
        "pyproject.toml",
        include_str!("../../templates/python/pyproject.toml"),
    ),
    (
        "{{module}}.py",
        include_str!("../../templates/python/plugin.py"),
    ),
    ("app.py", include_str!("../../templates/python/app.py")),
    (
        "tests/test_{{module}}.py",
        include_str!("../../templates/python/tests/test_plugin.py"),
    ),
];

const PYTHON_VERBATIM: &[File] = &[
    (
        "guest-sdk/python/wafer_guest/__init__.py",
        include_str!("../../../guest-sdk/python/wafer_guest/__init__.py"),
    ),
    (
        "guest-sdk/python/wafer_guest/describe.py",
        include_str!("../../../guest-sdk/python/wafer_guest/describe.py"),
    ),
    (
        "guest-sdk/python/wafer_guest/glue.py",
        include_str!("../../../guest-sdk/python/wafer_guest/glue.py"),
    ),
    (
        "guest-sdk/python/wafer_guest/log.py",
        include_str!("../../../guest-sdk/python/wafer_guest/log.py"),
    ),
    (
        "guest-sdk/python/wafer_guest/value.py",
        include_str!("../../../guest-sdk/python/wafer_guest/value.py"),
    ),
];

const JS: &[File] = &[
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
    ),
    (
        "src/{{module}}.js",
        include_str!("../../templates/js/src/plugin.js"),
    ),
    (
        "src/component.js",
        include_str!("../../templates/js/src/component.js"),
    ),
    (
        "test/{{module}}.test.js",
        include_str!("../../templates/js/test/plugin.test.js"),
    ),
];

const JS_VERBATIM: &[File] = &[
    (
        "guest-sdk/js/package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
    (
        "guest-sdk/js/src/component.js",
        include_str!("../../../guest-sdk/js/src/component.js"),
    ),
    (
        "guest-sdk/js/src/describe.js",
        include_str!("../../../guest-sdk/js/src/describe.js"),
    ),
    (
        "guest-sdk/js/src/glue.js",
        include_str!("../../../guest-sdk/js/src/glue.js"),
    ),
    (
        "guest-sdk/js/src/index.js",
        include_str!("../../../guest-sdk/js/src/index.js"),
    ),
    (
        "guest-sdk/js/src/log.js",
        include_str!("../../../guest-sdk/js/src/log.js"),
    ),
    (
        "guest-sdk/js/src/value.js",
        include_str!("../../../guest-sdk/js/src/value.js"),
    ),
];

/// Templates every project gets.
const COMMON: &[File] = &[
    (
        "README.md",
        include_str!("../../templates/common/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/common/gitignore"),
    ),
    (
        "events.jsonl",
        include_str!("../../templates/common/events.jsonl"),
    ),
    (
        "expected.txt",
        include_str!("../../templates/common/expected.txt"),
    ),
];

/// Names that would shadow a module the Python build relies on.
const RESERVED_MODULES: &[&str] = &["app", "wafer_guest", "wit_world", "component"];

/// Creates the project of plugin `name` in `parent/name` and returns its path.
/// Refuses an invalid name and an existing non-empty directory.
pub fn new_project(lang: Language, name: &str, parent: &Path) -> Result<PathBuf, ToolkitError> {
    check_name(name)?;
    let dir = parent.join(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ToolkitError::Exists(dir));
    }
    let names = Names::of(name, lang);
    let (templates, verbatim) = match lang {
        Language::Rust => (RUST, RUST_VERBATIM),
        Language::Python => (PYTHON, PYTHON_VERBATIM),
        Language::Js => (JS, JS_VERBATIM),
    };
    for (path, text) in templates.iter().chain(COMMON) {
        write(&dir.join(names.fill(path)), &names.fill(text))?;
    }
    write(&dir.join("wit/wafer.wit"), WIT)?;
    for (path, text) in verbatim {
        write(&dir.join(path), text)?;
    }
    Ok(dir)
}

fn write(path: &Path, text: &str) -> Result<(), ToolkitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ToolkitError::io(parent, e))?;
    }
    std::fs::write(path, text).map_err(|e| ToolkitError::io(path, e))
}

/// A plugin name: lowercase ASCII letters, digits, `-` and `_`, starting with a
/// letter, so that it is also a crate, package and (with `_`) module name.
fn check_name(name: &str) -> Result<(), ToolkitError> {
    let invalid = |reason: &str| {
        Err(ToolkitError::InvalidName {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return invalid("it must start with a lowercase letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return invalid("use lowercase letters, digits, `-` and `_` only");
    }
    if name.len() > 64 {
        return invalid("keep it to 64 characters");
    }
    if RESERVED_MODULES.contains(&snake(name).as_str()) {
        return invalid("it would shadow a module of the build");
    }
    Ok(())
}

fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// The placeholders of the templates.
struct Names {
    /// `{{name}}`: the plugin's name as given (descriptor, package, crate).
    name: String,
    /// `{{module}}`: the name as a module and file name (`-` → `_`).
    module: String,
    /// `{{Type}}`: the name as a type name (`my-plugin` → `MyPlugin`).
    type_name: String,
    /// `{{language}}`: the language, for prose.
    language: &'static str,
    /// `{{test}}`: the command that runs the logic's tests natively.
    test: &'static str,
}

impl Names {
    fn of(name: &str, lang: Language) -> Self {
        let type_name = name
            .split(['-', '_'])
            .map(|part| {
                let mut chars = part.chars();
                chars.next().map_or(String::new(), |first| {
                    first.to_ascii_uppercase().to_string() + chars.as_str()
                })
            })
            .collect();
        let (language, test) = match lang {
            Language::Rust => ("Rust", "cargo test"),
            Language::Python => ("Python", "python3 -m pytest"),
            Language::Js => ("JavaScript", "node --test"),
        };
        Self {
            name: name.to_owned(),
            module: snake(name),
            type_name,
            language,
            test,
        }
    }

    fn fill(&self, text: &str) -> String {
        text.replace("{{name}}", &self.name)
            .replace("{{module}}", &self.module)
            .replace("{{Type}}", &self.type_name)
            .replace("{{language}}", self.language)
            .replace("{{test}}", self.test)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_language_convention() {
        let n = Names::of("click-rate_2", Language::Python);
        assert_eq!(
            n.fill("{{name}} {{module}} {{Type}}"),
            "click-rate_2 click_rate_2 ClickRate2"
        );
    }

    #[test]
    fn a_rust_project_gets_every_file_of_the_sdk() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/rust/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                format!(
                    "guest-sdk/rust/src/{}",
                    e.unwrap().file_name().to_string_lossy()
                )
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = RUST_VERBATIM
            .iter()
            .map(|(path, _)| path.to_string())
            .filter(|path| path.starts_with("guest-sdk/rust/src/"))
            .collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn invalid_names_are_refused() {
        for bad in [
            "",
            "Caps",
            "9lives",
            "has space",
            "dot.ted",
            "app",
            "wafer-guest",
        ] {
            assert!(
                matches!(check_name(bad), Err(ToolkitError::InvalidName { .. })),
                "{bad:?} was accepted"
            );
        }
        assert!(check_name("click-rate").is_ok());
    }

    #[test]
    fn refuses_a_non_empty_directory_and_writes_the_wit_verbatim() {
        let parent = std::env::temp_dir().join(format!("wafer-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        let dir = new_project(Language::Js, "demo", &parent).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("wit/wafer.wit")).unwrap(),
            WIT
        );
        assert!(dir.join("src/demo.js").exists() && dir.join("test/demo.test.js").exists());
        assert!(matches!(
            new_project(Language::Js, "demo", &parent),
            Err(ToolkitError::Exists(_))
        ));
        let _ = std::fs::remove_dir_all(&parent);
    }
}

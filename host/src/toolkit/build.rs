//! `wafer plugin build`: the component of a plugin project, in `DIR/dist/`.
//!
//! The language is told by the project's files (`Cargo.toml`, then
//! `pyproject.toml` or `app.py`, then `package.json`), and each language is
//! built the way the repository builds its own plugins:
//!
//! - Rust: `cargo build --release --target wasm32-unknown-unknown`, linked into
//!   a component by the `wasm-component-ld` shipped in the rustup toolchain
//!   (`wasm32-wasip2` would pull WASI imports in through std's panic path, and
//!   the host refuses any import but the WIT's `log`);
//! - Python: componentize-py with `--stub-wasi`, over the project's
//!   `tool.pytest.ini_options.pythonpath` (the plugin and the SDK), entry
//!   module `app`;
//! - JavaScript: componentize-js on `src/component.js` with every optional
//!   engine feature disabled, run from the nearest directory holding
//!   `guest-sdk/js`, so the entry module's relative imports of the SDK resolve.
//!
//! Python and JavaScript use the toolchains pinned by the repository's scripts
//! (`.toolchains/python-venv`, `.toolchains/js`), looked up in `--toolchains`,
//! else in a `.toolchains` directory above the project or above the `wafer`
//! executable; componentize-py is also taken from `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::scaffold::WIT;
use super::{Language, ToolkitError};

/// The driver that runs the pinned componentize-js (one source with the
/// repository's `scripts/build-plugins-js.sh`).
const COMPONENTIZE_JS: &str = include_str!("../../../scripts/toolchains/js/componentize.mjs");

/// The pinned componentize-py requirement, for error messages.
const PYTHON_REQUIREMENTS: &str =
    include_str!("../../../scripts/toolchains/python-requirements.txt");

/// The world every plugin implements.
const WORLD: &str = "feature-plugin";

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What a build produced.
#[derive(Debug)]
pub struct Built {
    /// The project's language.
    pub language: Language,
    /// The components written (one per plugin crate; one for Python and JavaScript).
    pub components: Vec<PathBuf>,
    /// Things the author should know (e.g. a WIT that differs from this host's).
    pub warnings: Vec<String>,
}

/// The language of the project in `dir`, by its files.
pub fn detect(dir: &Path) -> Result<Language, ToolkitError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Language::Rust)
    } else if dir.join("pyproject.toml").is_file() || dir.join("app.py").is_file() {
        Ok(Language::Python)
    } else if dir.join("package.json").is_file() {
        Ok(Language::Js)
    } else {
        Err(ToolkitError::UnknownProject(dir.to_owned()))
    }
}

/// Builds the project in `dir` into `dir/dist/`. Build tools' output goes to
/// standard error. `toolchains` overrides the search for `.toolchains`.
pub fn build(dir: &Path, toolchains: Option<&Path>) -> Result<Built, ToolkitError> {
    let dir = dir.canonicalize().map_err(|e| ToolkitError::io(dir, e))?;
    let language = detect(&dir)?;
    let out = dir.join("dist");
    std::fs::create_dir_all(&out).map_err(|e| ToolkitError::io(&out, e))?;
    let mut warnings = Vec::new();
    let wit = find_up(&dir, "wit/wafer.wit");
    if let Some(wit) = &wit {
        if std::fs::read_to_string(wit).is_ok_and(|text| text != WIT) {
            warnings.push(format!(
                "{} differs from the contract this wafer implements; the host may refuse the \
                 component (a project made by `wafer plugin new` of this wafer has the current wit/ and guest-sdk/)",
                wit.display()
            ));
        }
    }
    let wit_dir = || {
        wit.as_deref()
            .and_then(Path::parent)
            .map(Path::to_owned)
            .ok_or_else(|| ToolkitError::Incomplete {
                path: dir.clone(),
                what:
                    "no wit/wafer.wit here or in a parent directory (`wafer plugin new` writes one)"
                        .into(),
            })
    };
    let components = match language {
        Language::Rust => build_rust(&dir, &out)?,
        Language::Python => {
            let tool = componentize_py(&dir, toolchains)?;
            vec![build_python(&dir, &out, &wit_dir()?, &tool)?]
        }
        Language::Js => {
            let tools = componentize_js(&dir, toolchains)?;
            vec![build_js(&dir, &out, &wit_dir()?, &tools)?]
        }
    };
    Ok(Built {
        language,
        components,
        warnings,
    })
}

fn build_rust(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, ToolkitError> {
    // rustc run in the project picks the toolchain of its rust-toolchain.toml.
    let sysroot = capture(Command::new("rustc").args(["--print", "sysroot"]), dir)?;
    let version = capture(Command::new("rustc").arg("-vV"), dir)?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_default();
    let rustlib = Path::new(sysroot.trim()).join("lib/rustlib");
    let linker = rustlib.join(host).join("bin/wasm-component-ld");
    if !linker.is_file() {
        return Err(ToolkitError::ToolchainMissing {
            tool: format!("wasm-component-ld ({})", linker.display()),
            install: "it ships with rustup's Rust 1.82 or later; install Rust with rustup".into(),
        });
    }
    if !rustlib.join(WASM_TARGET).is_dir() {
        return Err(ToolkitError::ToolchainMissing {
            tool: format!("the {WASM_TARGET} target"),
            install: format!("run `rustup target add {WASM_TARGET}` in {}", dir.display()),
        });
    }
    let args = [
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--message-format=json-render-diagnostics",
    ];
    let output = Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", &linker)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| missing("cargo", "install Rust with rustup (https://rustup.rs)", e))?;
    if !output.status.success() {
        return Err(ToolkitError::ToolFailed {
            command: format!("cargo {}", args.join(" ")),
            status: output.status.to_string(),
        });
    }
    let mut components = Vec::new();
    for artifact in wasm_artifacts(&String::from_utf8_lossy(&output.stdout)) {
        let file = artifact.file_name().map(PathBuf::from).unwrap_or_default();
        let target = out.join(file);
        std::fs::copy(&artifact, &target).map_err(|e| ToolkitError::io(&artifact, e))?;
        components.push(target);
    }
    if components.is_empty() {
        return Err(ToolkitError::Incomplete {
            path: dir.to_owned(),
            what: "cargo built no cdylib: a plugin crate needs `crate-type = [\"cdylib\", \"rlib\"]` under [lib]".into(),
        });
    }
    Ok(components)
}

/// The `.wasm` files of cdylib targets in cargo's JSON messages.
fn wasm_artifacts(messages: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        if !cdylib {
            continue;
        }
        let names = message["filenames"].as_array().into_iter().flatten();
        files.extend(
            names
                .filter_map(|f| f.as_str())
                .filter(|f| f.ends_with(".wasm"))
                .map(PathBuf::from),
        );
    }
    files
}

fn build_python(dir: &Path, out: &Path, wit: &Path, tool: &Path) -> Result<PathBuf, ToolkitError> {
    if !dir.join("app.py").is_file() {
        return Err(ToolkitError::Incomplete {
            path: dir.to_owned(),
            what:
                "no app.py, the component's entry module (`WitWorld = export_plugin(MyPlugin())`)"
                    .into(),
        });
    }
    let pyproject = read_toml(&dir.join("pyproject.toml"))?;
    let name = pyproject
        .as_ref()
        .and_then(|p| p.get("project")?.get("name")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| dir_name(dir));
    // The path pytest runs the plugin with is the one it is built with.
    let path: Vec<String> = pyproject
        .as_ref()
        .and_then(|p| {
            let entries = p
                .get("tool")?
                .get("pytest")?
                .get("ini_options")?
                .get("pythonpath")?
                .as_array()?;
            Some(
                entries
                    .iter()
                    .filter_map(|e| e.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .unwrap_or_else(|| vec![".".to_owned()]);
    let target = out.join(format!("{}.wasm", name.replace('-', "_")));
    let partial = target.with_extension("wasm.tmp");
    let mut command = Command::new(tool);
    command
        .arg("--wit-path")
        .arg(wit)
        .args(["--world", WORLD, "componentize", "--stub-wasi"]);
    for entry in &path {
        command.arg("-p").arg(dir.join(entry));
    }
    command.arg("app").arg("-o").arg(&partial);
    run(&mut command, dir, "componentize-py")?;
    std::fs::rename(&partial, &target).map_err(|e| ToolkitError::io(&partial, e))?;
    Ok(target)
}

fn build_js(dir: &Path, out: &Path, wit: &Path, tools: &Path) -> Result<PathBuf, ToolkitError> {
    let entry = dir.join("src/component.js");
    if !entry.is_file() {
        return Err(ToolkitError::Incomplete {
            path: dir.to_owned(),
            what: "no src/component.js, the component's entry module \
                   (`export const { describe, compute } = exportPlugin(MyPlugin);`)"
                .into(),
        });
    }
    let package = dir.join("package.json");
    let text = std::fs::read_to_string(&package).map_err(|e| ToolkitError::io(&package, e))?;
    let name = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|p| p["name"].as_str().map(str::to_owned))
        .unwrap_or_else(|| dir_name(dir));
    let target = out.join(format!("{}.wasm", name.replace(['-', '@', '/'], "_")));
    // componentize-js maps its working directory into the build: it must hold
    // the SDK the entry module imports.
    let root = dir
        .ancestors()
        .find(|d| d.join("guest-sdk/js/src/component.js").is_file())
        .unwrap_or(dir);
    let script =
        std::env::temp_dir().join(format!("wafer-componentize-{}.mjs", std::process::id()));
    std::fs::write(&script, COMPONENTIZE_JS).map_err(|e| ToolkitError::io(&script, e))?;
    let mut command = Command::new("node");
    command
        .arg(&script)
        .arg("--tools")
        .arg(tools)
        .arg("--wit")
        .arg(wit)
        .args(["--world", WORLD, "--source"])
        .arg(&entry)
        .arg("--out")
        .arg(&target);
    let result = run(&mut command, root, "node");
    let _ = std::fs::remove_file(&script);
    result?;
    Ok(target)
}

/// componentize-py: in the pinned venv of a `.toolchains`, else on `PATH`.
fn componentize_py(project: &Path, explicit: Option<&Path>) -> Result<PathBuf, ToolkitError> {
    let venv = toolchain_dirs(project, explicit)
        .into_iter()
        .map(|d| d.join("python-venv/bin/componentize-py"))
        .find(|p| p.is_file());
    if let Some(tool) = venv.or_else(|| on_path("componentize-py")) {
        return Ok(tool);
    }
    let pin = PYTHON_REQUIREMENTS
        .lines()
        .find(|l| l.starts_with("componentize-py"))
        .unwrap_or("componentize-py");
    Err(ToolkitError::ToolchainMissing {
        tool: "componentize-py".into(),
        install: format!(
            "in a Wafer checkout, `scripts/build-plugins-py.sh install` installs {pin} into \
             .toolchains/python-venv (pass --toolchains CHECKOUT/.toolchains when the project \
             and wafer are both outside it), or `pip install {pin}` puts it on PATH"
        ),
    })
}

/// The pinned componentize-js tree of a `.toolchains`.
fn componentize_js(project: &Path, explicit: Option<&Path>) -> Result<PathBuf, ToolkitError> {
    toolchain_dirs(project, explicit)
        .into_iter()
        .map(|d| d.join("js"))
        .find(|d| {
            d.join("node_modules/@bytecodealliance/componentize-js/src/componentize.js")
                .is_file()
        })
        .ok_or_else(|| ToolkitError::ToolchainMissing {
            tool: "componentize-js".into(),
            install:
                "in a Wafer checkout, `scripts/build-plugins-js.sh install` installs the pinned \
                      tree into .toolchains/js (pass --toolchains CHECKOUT/.toolchains when the \
                      project and wafer are both outside it)"
                    .into(),
        })
}

/// Where to look for toolchains: `explicit` alone, or every `.toolchains`
/// above the project, then above the running executable.
fn toolchain_dirs(project: &Path, explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(dir) = explicit {
        return vec![dir.to_owned()];
    }
    let exe = std::env::current_exe().and_then(|p| p.canonicalize()).ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    project
        .ancestors()
        .chain(exe_dir.into_iter().flat_map(Path::ancestors))
        .map(|d| d.join(".toolchains"))
        .filter(|d| d.is_dir())
        .collect()
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// `relative` in `dir` or the nearest parent holding it.
fn find_up(dir: &Path, relative: &str) -> Option<PathBuf> {
    dir.ancestors()
        .map(|d| d.join(relative))
        .find(|p| p.is_file())
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map_or_else(|| "plugin".to_owned(), |n| n.to_string_lossy().into_owned())
}

fn read_toml(path: &Path) -> Result<Option<toml::Table>, ToolkitError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<toml::Table>()
            .map(Some)
            .map_err(|e| ToolkitError::Incomplete {
                path: path.to_owned(),
                what: format!("not valid TOML: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ToolkitError::io(path, e)),
    }
}

/// Runs `command` in `dir` with its output on standard error.
fn run(command: &mut Command, dir: &Path, tool: &str) -> Result<(), ToolkitError> {
    let status = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| missing(tool, "install it and put it on PATH", e))?;
    if status.success() {
        Ok(())
    } else {
        Err(ToolkitError::ToolFailed {
            command: format!("{command:?}"),
            status: status.to_string(),
        })
    }
}

/// Standard output of `command` run in `dir`.
fn capture(command: &mut Command, dir: &Path) -> Result<String, ToolkitError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| missing(&program, "install Rust with rustup (https://rustup.rs)", e))?;
    if !output.status.success() {
        return Err(ToolkitError::ToolFailed {
            command: format!("{command:?}: {}", String::from_utf8_lossy(&output.stderr)),
            status: output.status.to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn missing(tool: &str, install: &str, e: std::io::Error) -> ToolkitError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ToolkitError::ToolchainMissing {
            tool: tool.to_owned(),
            install: install.to_owned(),
        }
    } else {
        ToolkitError::io(Path::new(tool), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_language_by_its_files() {
        let root = std::env::temp_dir().join(format!("wafer-detect-{}", std::process::id()));
        let case = |name: &str, file: &str| {
            let dir = root.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), "").unwrap();
            detect(&dir).ok()
        };
        assert_eq!(case("r", "Cargo.toml"), Some(Language::Rust));
        assert_eq!(case("p", "pyproject.toml"), Some(Language::Python));
        assert_eq!(case("a", "app.py"), Some(Language::Python));
        assert_eq!(case("j", "package.json"), Some(Language::Js));
        assert_eq!(case("n", "README.md"), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn picks_the_wasm_files_of_cdylib_artifacts() {
        let messages = concat!(
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libwit_bindgen.rlib"]}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"]},"filenames":["/t/my_plugin.wasm","/t/libmy_plugin.rlib"]}"#,
            "\n",
            "not json\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n",
        );
        assert_eq!(
            wasm_artifacts(messages),
            [PathBuf::from("/t/my_plugin.wasm")]
        );
    }
}

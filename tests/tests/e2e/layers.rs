//! The gateway's layers, checked on its source: a module imports only from its own layer or a
//! lower one (see docs/architecture.md), and the control core names no I/O crate. A `use` or path
//! that breaks a rule fails here, naming the file and the module it reached.

use std::path::{Path, PathBuf};

/// Top-level modules of the core: no I/O, imported by everything, importing only each other.
const CORE: &[&str] = &[
    "aws_sdk", "clock", "codec", "config", "control", "failure", "metrics", "profile", "secret",
    "tensor", "work",
];
/// The request path, in order: each may import the ones after it (and the side modules).
const REQUEST_PATH: &[&str] = &["api", "repo", "model", "batching", "exec"];
/// Beside the request path: imported by it, importing only the core.
const SIDE: &[&str] = &["cloud", "policy", "trace"];
/// Front doors: may import anything.
const FRONT: &[&str] = &[
    "app",
    "autoscale",
    "cli",
    "deploy",
    "fuzzing",
    "lambda_function",
    "loadgen",
    "replica",
    "server",
    "sim",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable source dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`control/fleet.rs` -> `control`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// Code lines of a file: comments and doc comments dropped, `#[cfg(test)]` modules included
/// (tests may reach anywhere, so the caller skips them).
fn code_before_tests(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or_default();
    body.lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules a file names through `crate::` paths, grouped ones (`use crate::{a, b::c}`)
/// included.
fn imports(text: &str) -> Vec<String> {
    let code = code_before_tests(text);
    let mut out = Vec::new();
    let mut add = |name: String| {
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    };
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // the names at the group's top level: `a`, `b::c`, `d::{e, f}` -> a, b, d
            let mut depth = 0;
            let mut start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphanumeric() || c == '_') => {
                        add(ident(&group[k..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            add(ident(rest));
        }
    }
    out
}

#[test]
fn grouped_imports_are_seen() {
    let found = imports("use crate::{api::AppState, control::{a, b}, model};\nuse crate::exec::x;");
    assert_eq!(found, ["api", "control", "model", "exec"]);
}

fn allowed(from: &str, to: &str) -> bool {
    if from == to || CORE.contains(&to) || FRONT.contains(&from) {
        return true;
    }
    if CORE.contains(&from) {
        return false;
    }
    let pos = |m: &str| REQUEST_PATH.iter().position(|x| *x == m);
    match (pos(from), pos(to)) {
        (Some(a), Some(b)) => b > a,
        (Some(_), None) => SIDE.contains(&to),
        (None, _) if SIDE.contains(&from) => false,
        _ => false,
    }
}

#[test]
fn every_import_points_down() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut broken = Vec::new();
    let mut seen = 0;
    for f in &files {
        let from = module_of(f);
        if from == "lib" || from == "main" {
            continue;
        }
        assert!(
            CORE.contains(&from.as_str())
                || REQUEST_PATH.contains(&from.as_str())
                || SIDE.contains(&from.as_str())
                || FRONT.contains(&from.as_str()),
            "{}: module '{from}' is in no layer: add it to tests/tests/layers.rs and docs/architecture.md",
            f.display()
        );
        seen += 1;
        let text = std::fs::read_to_string(f).expect("readable");
        for to in imports(&text) {
            if !allowed(&from, &to) {
                broken.push(format!("{} ({from}) imports crate::{to}", f.display()));
            }
        }
    }
    assert!(
        seen > 50,
        "only {seen} files found under {}",
        src().display()
    );
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

/// The `[dependencies]` of a workspace crate's manifest, one per line.
fn dependencies(krate: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../{krate}/Cargo.toml"));
    let manifest = std::fs::read_to_string(&path).expect("a manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table");
    deps.split("\n[")
        .next()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(['=', '.', ' ']).next())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// The simulator is its own crate on the core and the policy host: no server, no ONNX Runtime,
/// no AWS SDK; the policy host links wasmtime but no server or runtime either.
#[test]
fn the_simulator_and_the_policy_host_link_no_server() {
    for (krate, banned) in [
        (
            "sim",
            &["tokio", "hyper", "tonic", "ort", "aws", "mark-gateway"][..],
        ),
        (
            "policy-host",
            &[
                "tokio",
                "hyper",
                "tonic",
                "ort",
                "aws",
                "mark-gateway",
                "mark-sim",
            ][..],
        ),
    ] {
        let deps = dependencies(krate);
        assert!(deps.len() >= 3, "{krate}: {deps:?}");
        for b in banned {
            assert!(
                !deps.iter().any(|d| d.starts_with(b)),
                "{krate}/Cargo.toml depends on {b}: {deps:?}"
            );
        }
    }
}

/// One controller: the control step, the monitors and the emergency guard are assembled only by
/// `mark-core`'s `Controller` (`control::cycle`); the live loop and the simulator call it and
/// spell no step of their own.
#[test]
fn only_the_controller_assembles_the_control_step() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["gateway/src", "sim/src", "policy-host/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 60, "{}", files.len());
    for f in &files {
        let code = code_before_tests(&std::fs::read_to_string(f).expect("readable"));
        for spelled in [
            "controller::step",
            "controller::{step",
            "EmergencyGuard::new",
            "Monitors::new",
            "sample_into",
        ] {
            assert!(
                !code.contains(spelled),
                "{} spells `{spelled}` itself",
                f.display()
            );
        }
        assert!(
            !code.contains("step(")
                || !code.contains("use crate::control::controller::{")
                || !code.contains(" step,"),
            "{} imports the control step",
            f.display()
        );
    }
}

/// The decision core is its own crate (`core/`, `mark-core`): the compiler keeps tokio, hyper,
/// tonic, ort, wasmtime and the AWS SDK out of it as long as its manifest does not name them;
/// what a compiler cannot see (std's own sockets, processes, files) is checked here.
#[test]
fn the_core_crate_names_no_io() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core");
    let manifest = std::fs::read_to_string(core.join("Cargo.toml")).expect("core/Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .expect("a [dependencies] table");
    let deps = deps.split("\n[").next().unwrap_or_default();
    for io in [
        "tokio",
        "hyper",
        "tonic",
        "ort",
        "wasmtime",
        "aws",
        "mark-gateway",
    ] {
        assert!(
            !deps.lines().any(|l| l.trim_start().starts_with(io)),
            "core/Cargo.toml depends on {io}"
        );
    }
    let mut files = Vec::new();
    rust_files(&core.join("src"), &mut files);
    assert!(files.len() >= 14, "{files:?}");
    for f in &files {
        let code = code_before_tests(&std::fs::read_to_string(f).expect("readable"));
        for io in ["std::net", "std::process", "std::thread"] {
            assert!(!code.contains(io), "{} names {io}", f.display());
        }
        // catalogs and profiles are files by nature; nothing else in the core reads one
        if !(f.ends_with("catalog.rs") || f.ends_with("profile/mod.rs")) {
            assert!(!code.contains("std::fs"), "{} reads files", f.display());
        }
    }
}

#[test]
fn the_rules_themselves() {
    assert!(allowed("api", "exec") && allowed("batching", "exec") && allowed("exec", "work"));
    assert!(!allowed("exec", "batching") && !allowed("exec", "api") && !allowed("model", "api"));
    assert!(!allowed("control", "cloud") && !allowed("work", "exec") && !allowed("policy", "api"));
    assert!(allowed("exec", "policy") && !allowed("cloud", "exec") && allowed("sim", "app"));
    assert_eq!(
        imports(
            "use crate::a::b;\n// crate::c\nfn f() { crate::d::e() }\n#[cfg(test)]\nuse crate::z;"
        ),
        vec!["a", "d"]
    );
}

//! `mark serve --config mark.toml`: every flag of `mark serve` as a key of one TOML file, and
//! `mark config print-default`, the commented file of every key at its default.
//!
//! The file is turned into flags placed *before* the command line's, so a flag given on the
//! command line wins (`args_override_self`), and a key whose flag has an environment variable
//! that is set is left out, so `MARK_*` wins over the file too: flags > environment > file >
//! defaults. Keys are the flags' long names (`listen`, `max_body_bytes` or `max-body-bytes`);
//! a table groups keys and is otherwise ignored; an array repeats a flag; `true` sets a switch.
//! An unknown key, a value of the wrong type or one the flag refuses, and a secret (the admin
//! token: from the environment or `admin_token_file` only) exit 64 naming the key.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// Largest config file read.
pub const MAX_BYTES: u64 = 1 << 20;

/// The top-level table of `mark deploy`'s own keys, which `mark serve` skips.
pub const DEPLOY_TABLE: &str = "deploy";

/// Keys refused in a file: secrets come from the environment or a file of their own.
const SECRETS: &[(&str, &str)] = &[(
    "admin-token",
    "the admin token comes from MARK_ADMIN_TOKEN or admin_token_file, never from the config file",
)];

/// The `serve` subcommand's definition.
fn serve_command() -> clap::Command {
    Cli::command()
        .find_subcommand("serve")
        .cloned()
        .expect("mark serve")
}

/// The command line with `--config FILE` (or `MARK_CONFIG`) expanded: the file's keys as flags
/// before the command line's own. Unchanged for other subcommands or without a file.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    // the subcommand: the first word that is neither a global flag nor its value
    // (`mark --log-format json serve ...`)
    let globals: Vec<String> = Cli::command()
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut sub = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].to_string_lossy();
        if !a.starts_with('-') {
            sub = Some(i);
            break;
        }
        i += if globals.iter().any(|g| *g == a) {
            2
        } else {
            1
        };
    }
    let Some(sub) = sub.filter(|&i| args[i] == "serve") else {
        return Ok(args);
    };
    let mut file = std::env::var_os("MARK_CONFIG").filter(|v| !v.is_empty());
    for (i, a) in args.iter().enumerate().skip(sub + 1) {
        let a = a.to_string_lossy();
        if a == "--config" {
            file = Some(args.get(i + 1).cloned().ok_or("--config needs a file")?);
        } else if let Some(f) = a.strip_prefix("--config=") {
            file = Some(f.into());
        }
    }
    let Some(file) = file else {
        return Ok(args);
    };
    let given: Vec<String> = args[sub + 1..]
        .iter()
        .map(|a| a.to_string_lossy().to_string())
        .collect();
    let flags = file_flags(
        Path::new(&file),
        &|name| std::env::var_os(name).is_some(),
        &given,
    )?;
    let mut out: Vec<OsString> = args[..=sub].to_vec();
    out.extend(flags);
    out.extend(args[sub + 1..].iter().cloned());
    Ok(out)
}

/// The flags the file at `path` stands for (`env_set`: whether an environment variable is set;
/// `given`: the command line's own arguments, whose repeatable flags replace the file's).
pub fn file_flags(
    path: &Path,
    env_set: &dyn Fn(&str) -> bool,
    given: &[String],
) -> Result<Vec<OsString>, String> {
    let table = read_table(path)?;
    flags_of(&table, env_set, given).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// The file at `path` parsed, read at most [`MAX_BYTES`].
pub fn read_table(path: &Path) -> Result<toml::Table, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("--config {shown}: {e}"))?
        .len();
    if size > MAX_BYTES {
        return Err(format!(
            "--config {shown}: {size} bytes, more than the {MAX_BYTES} a config file may have"
        ));
    }
    // bounded even if the file grows (or is a pipe) between the check and the read
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(
            std::fs::File::open(path).map_err(|e| format!("--config {shown}: {e}"))?,
            MAX_BYTES + 1,
        ),
        &mut text,
    )
    .map_err(|e| format!("--config {shown}: {e}"))?;
    if text.len() as u64 > MAX_BYTES {
        return Err(format!("--config {shown}: more than {MAX_BYTES} bytes"));
    }
    text.parse()
        .map_err(|e| format!("--config {shown}: not TOML: {e}"))
}

/// The flags of a parsed file.
fn flags_of(
    table: &toml::Table,
    env_set: &dyn Fn(&str) -> bool,
    given: &[String],
) -> Result<Vec<OsString>, String> {
    let cmd = serve_command();
    let mut out = Vec::new();
    let mut keys = Vec::new();
    collect(table, "", &mut keys)?;
    for (key, value) in keys {
        let long = key.replace('_', "-");
        if let Some((_, why)) = SECRETS.iter().find(|(k, _)| *k == long) {
            return Err(format!("key `{key}`: {why}"));
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            .ok_or_else(|| format!("unknown key `{key}` (keys are the flags of `mark serve --help`; `mark config print-default` lists them)"))?;
        if arg.get_env().is_some_and(|e| env_set(&e.to_string_lossy())) {
            continue;
        }
        // a repeatable flag on the command line replaces the file's values (not adds to them)
        let flag = format!("--{long}");
        let on_cli = given
            .iter()
            .any(|g| *g == flag || g.starts_with(&format!("{flag}=")));
        if on_cli && matches!(arg.get_action(), clap::ArgAction::Append) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            v => vec![v],
        };
        let mut these = Vec::new();
        for v in values {
            match (v, takes_value) {
                (toml::Value::Boolean(true), false) => these.push(format!("--{long}").into()),
                (toml::Value::Boolean(false), false) => {}
                (_, false) => return Err(format!("key `{key}`: a switch: true or false")),
                // one `--long=value` argument: a value starting with '-' stays a value
                (toml::Value::String(s), true) => these.push(format!("--{long}={s}").into()),
                (toml::Value::Integer(n), true) => these.push(format!("--{long}={n}").into()),
                (toml::Value::Float(f), true) => these.push(format!("--{long}={f}").into()),
                (toml::Value::Boolean(b), true) => these.push(format!("--{long}={b}").into()),
                (other, true) => {
                    return Err(format!(
                        "key `{key}`: a {} is no value for --{long}",
                        other.type_str()
                    ))
                }
            }
        }
        // the flag's own parser judges the value, and the error names the key
        let mut probe = vec![OsString::from("serve")];
        probe.extend(these.iter().cloned());
        if let Err(e) = cmd.clone().try_get_matches_from(probe) {
            let first = e.to_string();
            let first = first.lines().next().unwrap_or_default();
            return Err(format!(
                "key `{key}`: {}",
                first.trim_start_matches("error: ")
            ));
        }
        out.extend(these);
    }
    Ok(out)
}

/// Every key of `table` (tables only group), with its value.
fn collect<'a>(
    table: &'a toml::Table,
    prefix: &str,
    out: &mut Vec<(String, &'a toml::Value)>,
) -> Result<(), String> {
    for (k, v) in table {
        match v {
            // `mark deploy`'s own keys (crate::deploy::config): not flags of `mark serve`
            toml::Value::Table(_) if prefix.is_empty() && k == DEPLOY_TABLE => {}
            toml::Value::Table(t) => collect(t, &format!("{prefix}{k}."), out)?,
            v => {
                // `max_body_bytes` and `max-body-bytes` are one key
                let same = |a: &str| a.replace('-', "_") == k.replace('-', "_");
                if out.iter().any(|(key, _)| same(key)) {
                    return Err(format!("key `{prefix}{k}` given twice"));
                }
                out.push((k.clone(), v));
            }
        }
    }
    Ok(())
}

/// `mark config print-default`: every key of `mark serve` at its default, commented out, with
/// its help; uncommenting a line and changing its value is how the file is written.
pub fn print_default() -> String {
    let cmd = serve_command();
    let mut s = String::from(
        "# mark serve --config mark.toml: every flag of `mark serve` as a key (its long name).\n\
         # Flags on the command line and MARK_* environment variables override this file.\n\
         # Secrets (the admin token) come from the environment or admin_token_file only.\n\
         # Keys below are at their defaults, commented out; a key without a default shows an example.\n",
    );
    for a in cmd.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if ["help", "version", "config"].contains(&long) || a.is_hide_set() {
            continue;
        }
        if SECRETS.iter().any(|(k, _)| *k == long) {
            continue;
        }
        let key = long.replace('-', "_");
        let _ = writeln!(s);
        let help = a
            .get_long_help()
            .or_else(|| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in textwrap(&help, 96) {
            let _ = writeln!(s, "# {line}");
        }
        if let Some(e) = a.get_env() {
            let _ = writeln!(s, "# (environment: {})", e.to_string_lossy());
        }
        let defaults: Vec<String> = a
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().to_string())
            .collect();
        if !a.get_action().takes_values() {
            let _ = writeln!(s, "# {key} = false");
        } else if let [d] = &defaults[..] {
            let _ = writeln!(s, "# {key} = {}", toml_value(d));
        } else {
            let _ = writeln!(s, "# {key} = \"...\"   (no default)");
        }
    }
    s
}

/// A default as TOML: a number stays a number, anything else is a string.
fn toml_value(d: &str) -> String {
    if d.parse::<i64>().is_ok() || (d.parse::<f64>().is_ok_and(f64::is_finite) && d.contains('.')) {
        d.to_string()
    } else {
        toml::Value::String(d.to_string()).to_string()
    }
}

/// `text` in lines of at most `width` characters (at word breaks).
fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn flags(text: &str) -> Result<Vec<String>, String> {
        let t: toml::Table = text.parse().expect("toml");
        flags_of(&t, &|_| false, &[]).map(|v| {
            v.into_iter()
                .map(|s| s.to_string_lossy().to_string())
                .collect()
        })
    }

    #[test]
    fn keys_become_flags_and_tables_only_group() {
        let f = flags(
            "listen = \"127.0.0.1:9000\"\nmax_body_bytes = 1024\nno_grpc = true\nnative_policies = false\n[control]\ncloud = \"local\"\ncontrol-interval = 2.5\n",
        )
        .unwrap();
        assert_eq!(
            f,
            // keys in order (a TOML table is sorted: `control` before `listen`)
            [
                "--cloud=local",
                "--control-interval=2.5",
                "--listen=127.0.0.1:9000",
                "--max-body-bytes=1024",
                "--no-grpc"
            ]
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_secrets_are_refused_by_name() {
        let e = flags("lisen = \"x\"").unwrap_err();
        assert!(e.contains("unknown key `lisen`"), "{e}");
        let e = flags("max_body_bytes = \"lots\"").unwrap_err();
        assert!(
            e.contains("key `max_body_bytes`") && e.contains("lots"),
            "{e}"
        );
        let e = flags("no_grpc = \"yes\"").unwrap_err();
        assert!(e.contains("key `no_grpc`: a switch"), "{e}");
        let e = flags("admin_token = \"hunter2\"").unwrap_err();
        assert!(
            e.contains("key `admin_token`") && e.contains("MARK_ADMIN_TOKEN"),
            "{e}"
        );
        let e = flags("listen = [1, 2]").unwrap_err();
        assert!(e.contains("key `listen`"), "{e}");
        let e = flags("listen = \"a\"\n[x]\nlisten = \"b\"").unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        let e = flags("max_body_bytes = 1\nmax-body-bytes = 2").unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn the_command_line_wins_over_the_environment_over_the_file() {
        let dir = std::env::temp_dir().join(format!("mark-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mark.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndrain_seconds = 3\nadmin_token_file = \"/run/t\"\n",
        )
        .unwrap();
        // the environment sets the token file: the file's key is left out
        let f = file_flags(&path, &|name| name == "MARK_ADMIN_TOKEN_FILE", &[]).unwrap();
        let mut argv: Vec<OsString> = vec!["mark".into(), "serve".into()];
        argv.extend(f);
        argv.extend(["--drain-seconds".into(), "7".into()]);
        let crate::cli::Cmd::Serve(a) = Cli::parse_from(argv).cmd else {
            panic!("serve")
        };
        assert_eq!(a.listen.to_string(), "127.0.0.1:9000", "from the file");
        assert_eq!(a.drain_seconds, 7.0, "the command line over the file");
        assert_eq!(
            a.admin_token_file, None,
            "the environment's, not the file's"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_printed_default_file_uncommented_is_every_default() {
        let text = print_default();
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                }) && !l.contains("(no default)")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() > 25, "{uncommented}");
        let f = flags(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let mut argv: Vec<OsString> = vec!["mark".into(), "serve".into()];
        argv.extend(f.into_iter().map(OsString::from));
        let crate::cli::Cmd::Serve(a) = Cli::parse_from(argv).cmd else {
            panic!("serve")
        };
        let crate::cli::Cmd::Serve(d) = Cli::parse_from(["mark", "serve"]).cmd else {
            panic!("serve")
        };
        assert_eq!(format!("{a:?}"), format!("{d:?}"));
    }

    #[test]
    fn the_shipped_example_is_a_valid_config() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mark-local.toml");
        let f = file_flags(&path, &|_| false, &[]).unwrap();
        let mut argv: Vec<OsString> = vec!["mark".into(), "serve".into()];
        argv.extend(f);
        let crate::cli::Cmd::Serve(a) = Cli::parse_from(argv).cmd else {
            panic!("serve")
        };
        assert_eq!(a.control.cloud.as_deref(), Some("local"));
    }

    #[test]
    fn a_global_flag_before_serve_and_a_repeated_flag_on_the_command_line() {
        let dir = std::env::temp_dir().join(format!("mark-config-g-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("mark.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9001\"\nec2_subnets = \"a,b\"\n",
        )
        .unwrap();
        let argv: Vec<OsString> = ["mark", "--log-format", "json", "serve", "--config"]
            .into_iter()
            .map(OsString::from)
            .chain([path.clone().into_os_string()])
            .collect();
        let out = expand(argv).unwrap();
        let out: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().to_string())
            .collect();
        assert!(
            out.contains(&"--listen=127.0.0.1:9001".to_string()),
            "{out:?}"
        );
        // `--ec2-subnets c` on the command line replaces the file's list, not adds to it
        let f = file_flags(&path, &|_| false, &["--ec2-subnets".into(), "c".into()]).unwrap();
        assert_eq!(f, [OsString::from("--listen=127.0.0.1:9001")]);
        let _ = std::fs::remove_dir_all(dir);
    }
}

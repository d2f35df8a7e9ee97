//! `mark serve` flags: parsing, the checks made together, and the options they build.

use super::*;

fn serve(args: &[&str]) -> ServeArgs {
    let mut all = vec!["mark", "serve"];
    all.extend_from_slice(args);
    match Cli::try_parse_from(all).expect("parses").cmd {
        Cmd::Serve(a) => a,
        _ => unreachable!(),
    }
}

const CATALOG: &str = r#"
[lambda]
memory_mb = 2048
price_per_gb_s = 0.0000166667
price_per_request = 0.0000002
cold_start_s = 1.0
concurrency_limit = 10

[[instance]]
name = "c5.large"
vcpus = 2
memory_gib = 4.0
price_on_demand = 0.085
launch_seconds = 40.0
"#;

#[test]
fn control_flags_are_checked_together() {
    assert_eq!(serve(&[]).control.validate(), Ok(()), "off without --cloud");
    let cases: &[(&[&str], &str)] = &[
        (&["--cloud", "gcp", "--catalog", "c.toml"], "unknown driver"),
        (&["--cloud", "local"], "needs --catalog"),
        (
            &[
                "--cloud",
                "local",
                "--catalog",
                "c",
                "--control-window",
                "90",
            ],
            "--control-window must be",
        ),
        (
            &[
                "--cloud",
                "local",
                "--catalog",
                "c",
                "--control-window",
                "0",
            ],
            "--control-window must be",
        ),
        (
            &[
                "--cloud",
                "local",
                "--catalog",
                "c",
                "--attainment-target",
                "1.5",
            ],
            "must be in (0, 1]",
        ),
        (
            &["--cloud", "ec2", "--catalog", "c"],
            "needs --ec2-image-id",
        ),
        (
            &[
                "--cloud",
                "local",
                "--catalog",
                "c",
                "--spot-max-share",
                "1",
            ],
            "--spot-max-share 1: must be between 0 and 1",
        ),
        (
            &[
                "--cloud",
                "ec2",
                "--catalog",
                "c",
                "--fleet",
                "f",
                "--ec2-image-id",
                "ami-1",
                "--ec2-template-user-data",
            ],
            "--ec2-template-user-data needs --ec2-launch-template",
        ),
    ];
    for (args, want) in cases {
        let e = serve(args).control.validate().unwrap_err();
        assert!(e.contains(want), "{args:?}: {e}");
    }
    let unnamed = serve(&[
        "--cloud",
        "ec2",
        "--catalog",
        "c",
        "--ec2-image-id",
        "ami-1",
    ]);
    assert!(
        unnamed.control.validate().unwrap_err().contains("--fleet"),
        "EC2 needs an explicit fleet name"
    );
    let bad = serve(&["--cloud", "local", "--catalog", "c", "--fleet", "a b"]);
    assert!(bad.control.validate().unwrap_err().contains("--fleet"));
    let ok = serve(&[
        "--cloud",
        "ec2",
        "--catalog",
        "c",
        "--ec2-image-id",
        "ami-1",
        "--fleet",
        "prod",
    ]);
    assert_eq!(ok.control.validate(), Ok(()));
}

#[test]
fn options_carry_the_flags_and_need_a_lambda_section_for_lambda() {
    let a = serve(&[
        "--cloud",
        "ec2",
        "--catalog",
        "c",
        "--ec2-image-id",
        "ami-1",
        "--fleet",
        "prod",
        "--control-interval",
        "30",
        "--lambda-function",
        "mark",
    ]);
    let catalog = Catalog::parse(CATALOG, "test").unwrap();
    let o = a
        .control
        .options(catalog.clone(), "mark".into(), "models".into())
        .unwrap();
    assert_eq!((o.interval_s, o.min_age_s, o.window_s), (30.0, 30.0, 5.0));
    assert_eq!(o.ec2.as_ref().map(|e| e.image_id.as_str()), Some("ami-1"));
    assert_eq!(o.lambda.as_ref().map(|l| l.function.as_str()), Some("mark"));
    let mut no_lambda = catalog;
    no_lambda.lambda = None;
    let e = a
        .control
        .options(no_lambda, "mark".into(), "models".into())
        .unwrap_err();
    assert!(e.contains("[lambda] section"), "{e}");
}

#[test]
fn a_worker_serves_with_defaults_native_policies_and_no_admin_api() {
    let w = ServeArgs::for_worker("repo".into(), "127.0.0.1:9".parse().unwrap(), None);
    let d = serve(&[]);
    assert!(w.native_policies && w.admin_token.is_none() && w.control.cloud.is_none());
    assert_eq!(w.model_repo, PathBuf::from("repo"));
    assert_eq!(
        (w.max_body_bytes, w.max_connections, w.idle_timeout_secs),
        (d.max_body_bytes, d.max_connections, d.idle_timeout_secs)
    );
}

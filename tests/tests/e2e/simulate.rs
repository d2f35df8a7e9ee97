//! `mark simulate` as a user runs it: the report files, the table, the shipped workloads in every
//! format, a policy component under evaluation, and precise errors for bad input.

use std::process::Command;

use crate::util::*;

fn simulate(args: &[&str]) -> std::process::Output {
    Command::new(mark_bin())
        .current_dir(root())
        .arg("simulate")
        .arg("--quiet")
        .args(args)
        .output()
        .expect("run mark simulate")
}

#[test]
fn writes_summary_table_and_plots() {
    let out = temp_dir("sim");
    let o = simulate(&[
        "--workload",
        "examples/workloads/stress.csv",
        "--baseline",
        "sagemaker",
        "--baseline",
        "mark-rs",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    print!("{stdout}");
    for label in ["sagemaker", "mark-rs", "mark-rs+spot", "x cheaper"] {
        assert!(stdout.contains(label), "table lacks {label}");
    }
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let p = s["policies"].as_array().unwrap();
    assert_eq!(p.len(), 3, "sagemaker once, mark-rs on-demand and spot");
    assert_eq!(p[0]["cost_ratio_vs_sagemaker"], 1.0);
    for x in p {
        assert!(x["requests"].as_u64().unwrap() > 800_000);
        assert!(x["total_cost"].as_f64().unwrap() > 0.0);
        assert!(!x["timeline"].as_array().unwrap().is_empty());
    }
    assert_eq!(
        std::fs::read_to_string(out.join("table.txt"))
            .unwrap()
            .lines()
            .count(),
        4
    );
    for f in ["capacity.svg", "cost.svg", "latency_ccdf.svg"] {
        let svg = std::fs::read_to_string(out.join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{f}"
        );
        assert!(svg.contains("mark-rs+spot"), "{f} names the runs");
    }
}

/// The names of a summary's rows, in order.
fn rows(s: &serde_json::Value) -> Vec<&str> {
    s["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect()
}

#[test]
fn accepts_every_workload_format_and_a_policy_under_test() {
    let out = temp_dir("sim-formats");
    for w in [
        "map:examples/workloads/mmpp-day:60",
        "csv:examples/workloads/twitter-like-day.csv:10",
        "stress:50:600",
    ] {
        let o = simulate(&[
            "--workload",
            w,
            "--baseline",
            "mark-rs",
            "--spot",
            "on-demand",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{w}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // an operator prices a batcher before hot-loading it: a component that always sends one
    let one = concat!(env!("OUT_DIR"), "/fixed-one.wasm");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--workload",
            "stress:150:600",
            "--baseline",
            "mark-rs",
            "--spot",
            "on-demand",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let o = simulate(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        (s, String::from_utf8_lossy(&o.stdout).to_string())
    };
    let (alone, _) = run(&[]);
    let default = alone["policies"][0].clone();
    assert!(alone.get("comparison").is_none(), "nothing to compare");
    // issue 32: the candidate runs beside the defaults, its row named after its file
    let (s, table) = run(&["--policy", &format!("batcher={one}")]);
    assert_eq!(rows(&s), ["mark-rs", "fixed-one"], "{table}");
    let (defaults, fixed) = (&s["policies"][0], &s["policies"][1]);
    assert_eq!(
        defaults, &default,
        "the defaults' row is the run without --policy"
    );
    assert_eq!(defaults["requests"], fixed["requests"], "same arrivals");
    assert_ne!(
        defaults["p50_ms"], fixed["p50_ms"],
        "the component under test decided the batches"
    );
    let c = &s["comparison"][0];
    assert_eq!(c["candidate"], "fixed-one");
    let dp50 = fixed["p50_ms"].as_f64().unwrap() - defaults["p50_ms"].as_f64().unwrap();
    assert!((c["p50_ms"].as_f64().unwrap() - dp50).abs() < 1e-9, "{c}");
    let dcost = fixed["total_cost"].as_f64().unwrap() / defaults["total_cost"].as_f64().unwrap();
    assert!((c["cost_pct"].as_f64().unwrap() - (dcost - 1.0) * 100.0).abs() < 1e-6);
    assert!(table.contains("fixed-one against mark-rs: cost"), "{table}");
    // with several models the candidate plans the shared fleet too, in a row of its own name
    let s = simulate_two_models(
        "sim-formats-two",
        ["resnet18=stress:10:600", "magika=stress:4:600"],
        &[
            "--baseline",
            "mark-rs",
            "--policy",
            &format!("batcher={one}"),
        ],
    );
    assert_eq!(rows(&s), ["mark-rs", "fixed-one"]);
    assert_eq!(s["comparison"][0]["candidate"], "fixed-one");
    assert!(s["policies"][1]["models"]["magika"]["requests"].as_u64() > Some(0));
}

/// Issue 32's ablation: each source of headroom can be turned off by name; an unknown name is
/// refused with the list.
#[test]
fn each_source_of_headroom_can_be_turned_off() {
    let out = temp_dir("sim-ablate");
    let cost = |ablate: &str| {
        let feedback = if ablate == "none" {
            "--slack-feedback"
        } else {
            "--threads=1"
        };
        let o = simulate(&[
            feedback,
            "--workload",
            "csv:examples/workloads/twitter-like-day.csv:10",
            "--baseline",
            "mark-rs",
            "--spot",
            "on-demand",
            "--native-policies",
            "--ablate",
            ablate,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        let p = s["policies"][0].clone();
        (p["total_cost"].as_f64().unwrap(), p)
    };
    let (with_feedback, p) = cost("none");
    assert!(
        p["headroom_steps"][0].as_u64().unwrap() > 0,
        "the feedback acted: {p}"
    );
    let (defaults, p) = cost("");
    assert_eq!(
        p["headroom_steps"],
        serde_json::json!([0, 0]),
        "off by default"
    );
    let (no_margin, _) = cost("margin");
    println!("defaults ${defaults:.3}, with the feedback ${with_feedback:.3}, without the margin ${no_margin:.3}");
    assert!(
        no_margin != defaults && with_feedback != defaults,
        "each changes the plan"
    );
    let o = simulate(&["--ablate", "margin,nonsense"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("slo-rule"));
}

#[test]
fn bad_input_exits_64_with_the_reason() {
    let dir = temp_dir("sim-bad");
    std::fs::write(dir.join("bad.csv"), "time_s,rate\n0,10\n60,abc\n").unwrap();
    std::fs::write(dir.join("notmap.map"), "-1 5\n0 -1\n1 0\n0 1\n").unwrap();
    let bad_csv = format!("csv:{}", dir.join("bad.csv").display());
    let bad_map = dir.join("notmap.map").display().to_string();
    for (args, want) in [
        (vec!["--workload", "nope"], "unknown workload"),
        (vec!["--workload", bad_csv.as_str()], "not numeric"),
        (vec!["--workload", bad_map.as_str()], "not a MAP"),
        (vec!["--baseline", "ec2-magic"], "unknown"),
        (vec!["--spot", "sometimes"], "on-demand, spot or both"),
        (vec!["--mass-interruption", "10:2"], "SHARE"),
        (vec!["--catalog", "Cargo.toml"], "Cargo.toml"),
        (vec!["--policy", "batcher=/nonexistent.wasm"], "nonexistent"),
    ] {
        let o = simulate(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// The strategies most two-model tests compare: one mark-rs fleet, a fleet per model.
const SHARED_AND_APART: [&str; 4] = ["--baseline", "mark-rs", "--baseline", "mark-rs-per-model"];

/// `mark simulate` of two models with `extra` flags (the baselines among them), on demand, into
/// a fresh directory named `name`: its summary.json (the run must succeed).
fn simulate_two_models(name: &str, workloads: [&str; 2], extra: &[&str]) -> serde_json::Value {
    let out = temp_dir(name);
    let mut args = vec!["--workload", workloads[0], "--workload", workloads[1]];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--spot", "on-demand", "--out", out.to_str().unwrap()]);
    let o = simulate(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    print!("{stdout}");
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn two_models_share_one_fleet_for_less_than_a_fleet_each() {
    // two light models on stress days (10 and 4 req/s, an hour): one fleet for the mix
    // against one per model; both within the SLO; per-model figures in summary.json
    let s = simulate_two_models(
        "sim-mm",
        ["resnet18=stress:10:3600", "magika=stress:4:3600"],
        &SHARED_AND_APART,
    );
    let p = s["policies"].as_array().unwrap();
    let (shared, apart) = (&p[0], &p[1]);
    assert_eq!(
        (shared["name"].as_str(), apart["name"].as_str()),
        (Some("mark-rs"), Some("mark-rs-per-model"))
    );
    for r in [shared, apart] {
        for m in ["resnet18", "magika"] {
            let x = &r["models"][m];
            assert!(x["attainment"].as_f64().unwrap() >= 0.995, "{m}: {x}");
            assert!(x["requests"].as_u64().unwrap() > 10_000, "{m}: {x}");
        }
        let shares: f64 = ["resnet18", "magika"]
            .iter()
            .map(|m| r["models"][m]["cost_share"].as_f64().unwrap())
            .sum();
        assert!((shares - 1.0).abs() < 1e-6, "cost shares add up: {shares}");
    }
    let (a, b) = (
        shared["total_cost"].as_f64().unwrap(),
        apart["total_cost"].as_f64().unwrap(),
    );
    assert!(
        a < b,
        "the shared fleet costs ${a:.3}, a fleet each ${b:.3}"
    );
    // the same requests either way (model m's arrivals seeded seed + m)
    assert_eq!(shared["requests"], apart["requests"]);
    // bad input: several unnamed workloads, a profile for no model, a model without profile
    for (args, why) in [
        (
            &["--workload", "steps", "--workload", "twitter-like"][..],
            "name each model's",
        ),
        (
            &["--workload", "a=steps", "--workload", "b=steps"][..],
            "no profile for model a",
        ),
        (
            &[
                "--workload",
                "resnet18=steps",
                "--workload",
                "mlp=steps",
                "--profile",
                "x=foo.toml",
            ][..],
            "no --workload x=",
        ),
    ] {
        let o = simulate(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[test]
fn each_model_is_held_to_its_own_slo_on_the_shared_fleet() {
    // magika held to 0.3 ms (less than any type's batch of one), resnet18 to the run's 300 ms:
    // magika misses, resnet18 does not, and the run's attainment is theirs together
    let s = simulate_two_models(
        "sim-mm-slo",
        ["resnet18=stress:10:1800", "magika=stress:4:1800"],
        &[
            &SHARED_AND_APART[..],
            &[
                "--model-slo",
                "magika=0.3",
                "--model-max-batch",
                "resnet18=4",
            ],
        ]
        .concat(),
    );
    for r in s["policies"].as_array().unwrap() {
        let (res, mag) = (&r["models"]["resnet18"], &r["models"]["magika"]);
        let att = |x: &serde_json::Value| x["attainment"].as_f64().unwrap();
        let req = |x: &serde_json::Value| x["requests"].as_u64().unwrap() as f64;
        assert_eq!(
            (res["slo_ms"].as_f64(), mag["slo_ms"].as_f64()),
            (Some(300.0), Some(0.3))
        );
        assert!(att(res) >= 0.995, "{}: resnet18 {res}", r["name"]);
        assert!(att(mag) < 0.5, "{}: magika at 0.3 ms {mag}", r["name"]);
        let together = (att(res) * req(res) + att(mag) * req(mag)) / (req(res) + req(mag));
        assert!(
            (r["attainment"].as_f64().unwrap() - together).abs() < 1e-9,
            "{}: the run's attainment is the models' together",
            r["name"]
        );
    }
    for (args, why) in [
        (&["--model-slo", "x=100"][..], "no model x"),
        (&["--model-slo", "magika=0"][..], "between 0 and"),
        (
            &["--model-slo", "magika=5", "--model-slo", "magika=6"][..],
            "named twice",
        ),
        (
            &["--model-max-batch", "resnet18=0"][..],
            "between 1 and 4096",
        ),
        (&["--model-max-batch", "resnet18"][..], "MODEL=VALUE"),
    ] {
        let mut all = vec!["--workload", "resnet18=steps", "--workload", "magika=steps"];
        all.extend_from_slice(args);
        let o = simulate(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

#[test]
fn a_multi_model_endpoint_is_one_endpoint_of_one_type_for_every_model() {
    // SageMaker's multi-model endpoint against an endpoint per model: the same requests, every
    // model served within its SLO by instances of one type, for no more than the endpoints
    let s = simulate_two_models(
        "sim-mme",
        ["resnet18=stress:10:1800", "magika=stress:4:1800"],
        &["--baseline", "sagemaker", "--baseline", "sagemaker-mme"],
    );
    let p = s["policies"].as_array().unwrap();
    let (apart, mme) = (&p[0], &p[1]);
    assert_eq!(
        (apart["name"].as_str(), mme["name"].as_str()),
        (Some("sagemaker"), Some("sagemaker-mme"))
    );
    assert_eq!(apart["requests"], mme["requests"]);
    assert_eq!(
        mme["instance_hours"].as_object().unwrap().len(),
        1,
        "one type: {}",
        mme["instance_hours"]
    );
    for m in ["resnet18", "magika"] {
        let (a, b) = (&apart["models"][m], &mme["models"][m]);
        assert_eq!(a["requests"], b["requests"], "{m}");
        assert!(b["attainment"].as_f64().unwrap() >= 0.99, "{m}: {b}");
    }
    assert!(
        mme["total_cost"].as_f64().unwrap() <= apart["total_cost"].as_f64().unwrap(),
        "one endpoint ${} against two ${}",
        mme["total_cost"],
        apart["total_cost"]
    );
    // a model no type serves within its SLO misses on the endpoint; the other is still served
    let s = simulate_two_models(
        "sim-mme-strict",
        ["resnet18=stress:10:1800", "magika=stress:4:1800"],
        &["--baseline", "sagemaker-mme", "--model-slo", "magika=0.3"],
    );
    let mme = &s["policies"][0];
    assert!(mme["total_cost"].as_f64().unwrap() > 0.0, "{mme}");
    assert!(
        mme["models"]["resnet18"]["attainment"].as_f64().unwrap() >= 0.99,
        "{}",
        mme["models"]
    );
}

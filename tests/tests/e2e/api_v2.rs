//! Every v2 endpoint and every error status of the data plane, against the real binary.

use crate::util::*;
use serde_json::json;

const MLP: &str = "max_batch_size = 16\nslo_ms = 50\nversion = \"3\"\n";

async fn gateway(extra: &[&str]) -> Gateway {
    let repo = repo_with(&[("mlp", MLP)]);
    let mut args = vec!["--model-repo", repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    Gateway::start(&args).ready().await
}

#[tokio::test]
async fn health_server_and_model_metadata() {
    let g = gateway(&[]).await;
    let b = &g.base;
    assert_eq!(
        get(&format!("{b}/v2/health/live")).await.unwrap().json()["live"],
        true
    );
    assert_eq!(
        get(&format!("{b}/v2/health/ready")).await.unwrap().status,
        200
    );
    let meta = get(&format!("{b}/v2")).await.unwrap().json();
    assert_eq!(meta["name"], "mark-rs");
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("binary_tensor_data")));

    let m = get(&format!("{b}/v2/models/mlp")).await.unwrap();
    assert_eq!(m.status, 200);
    let m = m.json();
    assert_eq!(m["name"], "mlp");
    assert_eq!(m["versions"], json!(["3"]));
    assert_eq!(
        m["inputs"],
        json!([{"name": "input", "datatype": "FP32", "shape": [-1, 784]}])
    );
    assert_eq!(
        m["outputs"][1],
        json!({"name": "probs", "datatype": "FP32", "shape": [-1, 10]})
    );
    assert_eq!(
        get(&format!("{b}/v2/models/mlp/versions/3"))
            .await
            .unwrap()
            .json(),
        m
    );
    assert_eq!(
        get(&format!("{b}/v2/models/mlp/ready"))
            .await
            .unwrap()
            .json()["ready"],
        true
    );
    assert_eq!(
        get(&format!("{b}/v2/models/mlp/versions/3/ready"))
            .await
            .unwrap()
            .status,
        200
    );

    let r = get(&format!("{b}/v2/models/nope")).await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.error().contains("unknown model 'nope'"), "{}", r.error());
    let r = get(&format!("{b}/v2/models/mlp/versions/9/ready"))
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no version '9'"), "{}", r.error());
    let r = get(&format!("{b}/v3/anything")).await.unwrap();
    assert_eq!(r.status, 404);
    let r = send("POST", &format!("{b}/v2/health/live"), &[], vec![])
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET");
    let r = get(&format!("{b}/v2/models/mlp/infer")).await.unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "POST");
}

#[tokio::test]
async fn infer_json_flat_nested_outputs_subset_and_id() {
    let g = gateway(&[]).await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let row = mlp_row(1);
    let mut flat = mlp_request(std::slice::from_ref(&row));
    flat["id"] = json!("req-42");
    let a = post_json(&url, &flat).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = a.json();
    assert_eq!(a["id"], "req-42");
    assert_eq!(a["model_name"], "mlp");
    assert_eq!(a["model_version"], "3");
    assert_eq!(a["outputs"].as_array().unwrap().len(), 2);
    let probs = output_f32(&a, "probs");
    assert_eq!(probs.len(), 10);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);

    let nested = json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [row]}],
                        "outputs": [{"name": "probs"}]});
    let v = post_json(
        &format!("{}/v2/models/mlp/versions/3/infer", g.base),
        &nested,
    )
    .await
    .json();
    assert_eq!(
        v["outputs"].as_array().unwrap().len(),
        1,
        "only the requested output"
    );
    assert_eq!(output_f32(&v, "probs"), probs);
    assert!(v.get("id").is_none());
}

#[tokio::test]
async fn infer_binary_tensors_round_trip() {
    let g = gateway(&[]).await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let rows = [mlp_row(5), mlp_row(6)];
    let json_out = post_json(&url, &mlp_request(&rows)).await.json();
    let header = json!({"inputs": [{"name": "input", "shape": [2, 784], "datatype": "FP32", "parameters": {"binary_data_size": 2 * 784 * 4}}],
                        "outputs": [{"name": "logits", "parameters": {"binary_data": true}}, {"name": "probs"}]})
    .to_string();
    let mut body = header.clone().into_bytes();
    for x in rows.iter().flatten() {
        body.extend_from_slice(&x.to_le_bytes());
    }
    let r = send(
        "POST",
        &url,
        &[("inference-header-content-length", header.len().to_string())],
        body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let n: usize = r.headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let head = r.json();
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        2 * 10 * 4
    );
    let logits: Vec<f32> = r.body[n..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        logits,
        output_f32(&json_out, "logits"),
        "binary output equals JSON output"
    );
    assert_eq!(output_f32(&head, "probs"), output_f32(&json_out, "probs"));
}

#[tokio::test]
async fn bad_requests_get_precise_errors() {
    let g = gateway(&["--max-body-bytes", "100000"]).await;
    let url = format!("{}/v2/models/mlp/infer", g.base);
    let cases = [
        (
            json!({"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}),
            "input 'input' has shape [2,3]; model expects [-1,784]",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP64", "data": vec![0.0; 784]}]}),
            "input 'input' has datatype FP64; model expects FP32",
        ),
        (
            json!({"inputs": [{"name": "other", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            "model 'mlp' has no input 'other'",
        ),
        (json!({"inputs": []}), "request has no inputs"),
        (
            json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": [1, 2]}]}),
            "input 'input' has 2 elements in 'data' but its shape holds 784",
        ),
        (
            json!({"inputs": [{"name": "input", "shape": [17, 784], "datatype": "FP32", "data": vec![0.0; 17 * 784]}]}),
            "batch of 17 rows; model 'mlp' accepts 1..=16",
        ),
        (
            {
                let mut r = mlp_request(&[mlp_row(0)]);
                r["outputs"] = json!([{"name": "nope"}]);
                r
            },
            "has no output 'nope'",
        ),
    ];
    for (body, want) in cases {
        let r = post_json(&url, &body).await;
        assert_eq!(r.status, 400, "{want}");
        assert!(
            r.error().contains(want),
            "expected {want:?}, got {:?}",
            r.error()
        );
    }
    let r = send(
        "POST",
        &url,
        &[("content-type", "application/json".into())],
        b"{\"inputs\": [".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.error().contains("not valid v2 JSON"), "{}", r.error());

    let r = send(
        "POST",
        &url,
        &[("content-type", "text/plain".into())],
        b"{}".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 415);
    assert!(r.error().contains("text/plain"), "{}", r.error());

    let big = mlp_request(&[
        mlp_row(0),
        mlp_row(1),
        mlp_row(2),
        mlp_row(3),
        mlp_row(4),
        mlp_row(5),
        mlp_row(6),
        mlp_row(7),
        mlp_row(8),
        mlp_row(9),
        mlp_row(10),
        mlp_row(11),
        mlp_row(12),
        mlp_row(13),
        mlp_row(14),
        mlp_row(15),
    ]);
    let r = post_json(&url, &big).await;
    assert_eq!(r.status, 413);
    assert!(
        r.error().contains("exceeds the limit of 100000 bytes"),
        "{}",
        r.error()
    );

    let r = post_json(
        &format!("{}/v2/models/ghost/infer", g.base),
        &mlp_request(&[mlp_row(0)]),
    )
    .await;
    assert_eq!(r.status, 404);

    // the gateway still serves after all of that
    assert_eq!(
        post_json(&url, &mlp_request(&[mlp_row(0)])).await.status,
        200
    );
    let m = get(&format!("{}/metrics", g.base)).await.unwrap();
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        metric(&text, "mark_requests_total{model=\"mlp\",status=\"400\"}") >= 8.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, "mark_requests_total{model=\"mlp\",status=\"413\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "mark_requests_total{model=\"mlp\",status=\"200\"}"),
        1.0
    );
    for series in [
        "mark_request_latency_seconds_bucket",
        "mark_batch_size_bucket",
        "mark_queue_depth",
        "mark_executor_busy_seconds_total",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }
}

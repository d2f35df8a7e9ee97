//! Dynamic batching end to end: batched answers equal unbatched ones element for element,
//! concurrent clients produce batches > 1, and a full queue answers 503 without losing requests.

use std::collections::HashMap;

use crate::util::*;

#[tokio::test]
async fn concurrent_requests_batch_and_match_unbatched_answers() {
    let repo = repo_with(&[(
        "mlp",
        "max_batch_size = 32\nslo_ms = 200\nexecutors = 1\nintra_threads = 1\n",
    )]);
    let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
        .ready()
        .await;
    let url = format!("{}/v2/models/mlp/infer", g.base);

    // Reference: each row alone, one request at a time (batch size 1).
    let n = 48u32;
    let mut reference = HashMap::new();
    for i in 0..n {
        let v = post_json(&url, &mlp_request(&[mlp_row(i)])).await.json();
        reference.insert(i, (output_f32(&v, "logits"), output_f32(&v, "probs")));
    }
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    let batches_before = metric(&text, "mark_batch_size_count{model=\"mlp\"}");
    let le1_before = metric(&text, "mark_batch_size_bucket{le=\"1.0\",model=\"mlp\"}");

    // Now 8 rounds of all rows at once, from concurrent clients.
    let mut tasks = Vec::new();
    for round in 0..8 {
        for i in 0..n {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                (round, i, post_json(&url, &mlp_request(&[mlp_row(i)])).await)
            }));
        }
    }
    let mut answered = 0;
    for t in tasks {
        let (_, i, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v = r.json();
        let (logits, probs) = &reference[&i];
        assert_eq!(
            &output_f32(&v, "logits"),
            logits,
            "row {i}: batched logits differ from unbatched"
        );
        assert_eq!(
            &output_f32(&v, "probs"),
            probs,
            "row {i}: batched probs differ from unbatched"
        );
        answered += 1;
    }
    assert_eq!(answered, 8 * n);
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    let batches = metric(&text, "mark_batch_size_count{model=\"mlp\"}") - batches_before;
    let singles = metric(&text, "mark_batch_size_bucket{le=\"1.0\",model=\"mlp\"}") - le1_before;
    assert!(
        batches < f64::from(8 * n),
        "{batches} batches for {} requests: no batching happened",
        8 * n
    );
    assert!(singles < batches, "every batch had one item");
    println!(
        "{} concurrent requests ran in {batches} batches (mean {:.1} items)",
        8 * n,
        f64::from(8 * n) / batches
    );
}

#[tokio::test]
async fn full_queue_answers_503_and_loses_nothing() {
    // resnet18 takes ~25 ms per image here: 40 concurrent requests overrun a queue of 3.
    let repo = repo_with(&[(
        "resnet18",
        "max_batch_size = 4\nslo_ms = 100\nexecutors = 1\nintra_threads = 1\nqueue_capacity = 3\non_deadline = \"serve\"\n",
    )]);
    let g = Gateway::start(&["--model-repo", repo.to_str().unwrap()])
        .ready()
        .await;
    let url = format!("{}/v2/models/resnet18/infer", g.base);
    let image: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| (i % 255) as f32 / 255.0)
        .collect();
    let body = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": image}],
                                  "outputs": [{"name": "logits"}]});
    let reference = output_f32(&post_json(&url, &body).await.json(), "logits");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (url, body) = (url.clone(), body.clone());
        tasks.push(tokio::spawn(async move { post_json(&url, &body).await }));
    }
    let (mut ok, mut busy) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            200 => {
                let got = output_f32(&r.json(), "logits");
                let max_diff = got
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    max_diff < 1e-3,
                    "wrong answer under load: max diff {max_diff}"
                );
                ok += 1;
            }
            503 => {
                assert_eq!(r.headers["retry-after"], "1");
                assert!(r.error().contains("overloaded"), "{}", r.error());
                busy += 1;
            }
            s => panic!(
                "unexpected status {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
    assert_eq!(ok + busy, 40, "every request answered exactly once");
    assert!(busy > 0, "queue never filled");
    assert!(ok > 3, "queue admitted too little");
    let text = String::from_utf8_lossy(&get(&format!("{}/metrics", g.base)).await.unwrap().body)
        .to_string();
    assert_eq!(
        metric(
            &text,
            "mark_requests_total{model=\"resnet18\",status=\"200\"}"
        ),
        f64::from(ok + 1)
    );
    assert_eq!(
        metric(
            &text,
            "mark_requests_total{model=\"resnet18\",status=\"503\"}"
        ),
        f64::from(busy)
    );
    println!("40 concurrent: {ok} answered 200, {busy} refused 503");
}

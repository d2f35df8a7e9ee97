//! Issue 29: peers without the admin token cannot lock operators out of the admin listener. 64
//! peers (distinct loopback addresses) fetch the sign-in page over keep-alive connections and
//! keep them open; one peer opens 20 keep-alive connections with the token; the operator's
//! status call still answers within 1 s.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::util::*;

/// A keep-alive connection from `from` that sends one request and reads the answer's head;
/// returns the socket (still open unless the server closed it) and the answer's head.
async fn one_request(from: Ipv4Addr, admin: SocketAddr, req: &str) -> (TcpStream, String) {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.into(), 0)).unwrap();
    let mut c = tokio::time::timeout(Duration::from_secs(5), s.connect(admin))
        .await
        .expect("connect within 5 s")
        .unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (c, String::from_utf8_lossy(&head).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_keep_alive_peers_lock_nobody_out() {
    within(120, async {
        let token = "a-long-enough-admin-token";
        let (_g, admin) = start_mlp_with_admin(token).await;
        let addr: SocketAddr = admin.trim_start_matches("http://").parse().unwrap();
        // 64 peers poll the sign-in page and keep their connections
        let mut held = Vec::new();
        for k in 0..64u8 {
            let (c, head) = one_request(
                Ipv4Addr::new(127, 0, 1, k + 1),
                addr,
                "GET /admin/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            )
            .await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase().contains("connection: close"),
                "an unauthenticated answer closes the connection: {head}"
            );
            held.push(c);
        }
        // one peer with the token opens 20 keep-alive connections: it gets its share (8)
        let mut closed = 0;
        for _ in 0..20 {
            let (mut c, head) = one_request(
                Ipv4Addr::new(127, 0, 2, 1),
                addr,
                &format!("GET /admin/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n"),
            )
            .await;
            if head.is_empty() {
                closed += 1;
            } else {
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                // drain the body so the connection is idle, and keep it
                let mut buf = [0u8; 65536];
                let _ = tokio::time::timeout(Duration::from_millis(50), c.read(&mut buf)).await;
            }
            held.push(c);
        }
        println!("one peer's 20 keep-alive connections: {closed} closed at once (8 per peer)");
        assert_eq!(closed, 12, "a peer holds at most 8 admin connections");
        // the operator, from another address, is answered at once
        let t = Instant::now();
        let st = admin_status(&admin, token).await;
        let took = t.elapsed();
        println!("operator's status call with 84 peer connections open: {took:?}");
        assert!(st.get("control").is_some() || st.get("models").is_some(), "{st}");
        assert!(took < Duration::from_secs(1), "took {took:?}");
        drop(held);

        // HTTP/2 (whose connections cannot be closed after one unauthenticated answer) is not
        // spoken on the admin listener: the preface gets no HTTP/2 settings frame back
        let (_c, head) = one_request(
            Ipv4Addr::new(127, 0, 3, 1),
            addr,
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        )
        .await;
        assert!(
            head.is_empty() || head.starts_with("HTTP/1.1 "),
            "no HTTP/2 on the admin listener: {head:?}"
        );
    })
    .await;
}

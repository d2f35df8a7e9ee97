//! Server lifecycle: accept connections within a bound, serve HTTP/1.1 and HTTP/2, and on shutdown
//! stop accepting and wait for in-flight requests to be answered.
//!
//! No connection holds a slot for nothing: a socket must start a request within
//! `first_request` (it does not count against `max_connections` until it does), HTTP/1 headers
//! must arrive within `header_read`, a connection with no request in flight for `idle` is closed
//! gracefully (HTTP/1 keep-alive and HTTP/2 alike), and HTTP/2 peers that stop answering pings
//! are dropped. A failing `accept` (out of file descriptors) backs off instead of spinning.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connection limits and timeouts of one listener.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Connections serving requests at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Accepted sockets that have not started a request yet, at once.
    pub max_pending: usize,
    /// Time a new socket has to send the start of its first request.
    pub first_request: Duration,
    /// Time an HTTP/1 request's headers have to arrive.
    pub header_read: Duration,
    /// A connection with nothing in flight this long is closed.
    pub idle: Duration,
    /// Streams per HTTP/2 connection.
    pub max_streams: u32,
    /// Serving connections one peer address may hold at once (more are closed at once).
    pub max_per_peer: usize,
    /// A connection is closed gracefully after this long, busy or not.
    pub max_lifetime: Option<Duration>,
    /// HTTP/1 only (the admin listener: an HTTP/2 connection cannot be closed after one
    /// unauthenticated answer, so it could hold a slot between a peer's requests).
    pub http1_only: bool,
}

impl ConnLimits {
    /// The data plane's defaults with `max_connections` and `idle`.
    pub fn data_plane(max_connections: usize, idle: Duration) -> Self {
        ConnLimits {
            max_connections,
            max_pending: max_connections.max(256),
            first_request: Duration::from_secs(10),
            header_read: Duration::from_secs(10),
            idle,
            max_streams: 256,
            max_per_peer: usize::MAX,
            max_lifetime: None,
            http1_only: false,
        }
    }

    /// The admin listener's: few connections, short patience, at most 8 per peer address and
    /// 10 minutes each, so neither silent sockets nor one peer's keep-alive connections can lock
    /// operators out (the admin API also closes a connection after answering an unauthenticated
    /// request).
    pub fn admin() -> Self {
        ConnLimits {
            max_connections: 64,
            max_pending: 1024,
            first_request: Duration::from_secs(2),
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(30),
            max_streams: 16,
            max_per_peer: 8,
            max_lifetime: Some(Duration::from_secs(600)),
            http1_only: true,
        }
    }
}

/// Requests in flight on one connection and the time of its last activity.
struct Activity {
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
    born: Instant,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.born.elapsed().as_millis() as u64, Relaxed);
    }
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Relaxed) > 0 {
            return None;
        }
        let now = self.born.elapsed().as_millis() as u64;
        Some(Duration::from_millis(
            now.saturating_sub(self.last_ms.load(Relaxed)),
        ))
    }
}

/// Serving connections per peer address.
type PerPeer = Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One peer's serving connection, counted while it lives.
struct PeerSlot(PerPeer, std::net::IpAddr);

impl PeerSlot {
    /// A slot for `ip` (an IPv6 peer counts by its /64: one host has many addresses), or None
    /// when it holds `max` already.
    fn take(peers: &PerPeer, ip: std::net::IpAddr, max: usize) -> Option<PeerSlot> {
        let ip = crate::api::peer_key(ip);
        let mut g = peers.lock().expect("peer lock");
        let n = g.entry(ip).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(PeerSlot(peers.clone(), ip))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut g = self.0.lock().expect("peer lock");
        if let Some(n) = g.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                g.remove(&self.1);
            }
        }
    }
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Waits until the socket has sent enough to tell HTTP/1 from the HTTP/2 preface (or hung up).
/// False when nothing useful came within `within`.
async fn first_bytes(stream: &TcpStream, within: Duration) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    tokio::time::timeout(within, async {
        loop {
            match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) if n >= PREFACE.len() || buf[..n] != PREFACE[..n] => return true,
                // a prefix of the HTTP/2 preface: wait for the rest
                Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains open connections. The
/// REST data plane, the gRPC listener and the admin API all run on this.
pub async fn run<H, F, B>(
    listener: TcpListener,
    limits: ConnLimits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + 'static,
{
    let active = Arc::new(Semaphore::new(limits.max_connections));
    let pending = Arc::new(Semaphore::new(limits.max_pending));
    let peers: PerPeer = Default::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if limits.http1_only {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        let wait = tokio::select! {
            p = pending.clone().acquire_owned() => p.expect("semaphore open"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => {
                    backoff = Duration::ZERO;
                    x
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: retrying at once would spin a core; wait for
                    // connections to close, doubling up to a second
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    tracing::warn!(cause = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (h, builder, active, limits, peers) = (
            handler.clone(),
            builder.clone(),
            active.clone(),
            limits.clone(),
            peers.clone(),
        );
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            if !first_bytes(&stream, limits.first_request).await {
                tracing::debug!(%peer, "closed a socket that sent no request");
                return;
            }
            drop(wait);
            // the data plane has no per-peer cap: no lock taken for it
            let _peer_slot = if limits.max_per_peer == usize::MAX {
                None
            } else {
                let Some(s) = PeerSlot::take(&peers, peer.ip(), limits.max_per_peer) else {
                    tracing::debug!(%peer, max = limits.max_per_peer, "closed a connection: the peer holds its share");
                    return;
                };
                Some(s)
            };
            let Ok(_slot) = active.acquire_owned().await else {
                return;
            };
            let activity = Arc::new(Activity {
                in_flight: AtomicUsize::new(0),
                last_ms: AtomicU64::new(0),
                born: Instant::now(),
            });
            let act = activity.clone();
            let peer_ip = peer.ip();
            let svc = service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(crate::api::Peer(peer_ip));
                let h = h.clone();
                act.in_flight.fetch_add(1, Relaxed);
                let guard = InFlight(act.clone());
                async move {
                    let r = h(req).await;
                    drop(guard);
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let mut closing = false;
            let mut tick = tokio::time::interval(limits.idle / 4 + Duration::from_millis(1));
            let end_of_life = tokio::time::sleep(
                limits
                    .max_lifetime
                    .unwrap_or(Duration::from_secs(365 * 86_400)),
            );
            tokio::pin!(end_of_life);
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, cause = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.wait_for(|s| *s), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = &mut end_of_life, if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = tick.tick(), if !closing => {
                        if activity.idle_for().is_some_and(|d| d >= limits.idle) {
                            closing = true;
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
        });
    }
    let open = limits.max_connections - active.available_permits();
    tracing::info!(open, "shutting down: draining connections");
    let _ = stop_tx.send(true);
    // every serving connection holds a permit: all of them back means all are closed
    let _ = active.acquire_many(limits.max_connections as u32).await;
}

/// Raises this process's soft open-file limit to its hard limit (each connection is a file
/// descriptor; the default soft limit is often 1024). Returns the limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    Some(lim.rlim_cur)
}

/// Raises the open-file limit and warns when it is below what `max_connections` needs (the
/// connections, sockets still to send a first request, and room for models, workers and logs).
pub fn check_fd_limit(max_connections: usize) {
    match raise_fd_limit() {
        Some(n) if (max_connections as u64).saturating_mul(2) + 256 > n => tracing::warn!(
            fd_limit = n,
            max_connections,
            "the open-file limit is below 2 x --max-connections + 256: accept will fail (and back off) before the connection limit is reached; raise `ulimit -n`"
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_holds_its_share_and_ipv6_counts_by_its_64() {
        let peers: PerPeer = Default::default();
        let a: std::net::IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: std::net::IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: std::net::IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let first = PeerSlot::take(&peers, a, 1).expect("a slot");
        assert!(PeerSlot::take(&peers, b, 1).is_none(), "same /64");
        assert!(PeerSlot::take(&peers, c, 1).is_some(), "another /64");
        drop(first);
        assert!(PeerSlot::take(&peers, b, 1).is_some(), "freed on drop");
        let v4: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let _x = PeerSlot::take(&peers, v4, 1).unwrap();
        assert!(PeerSlot::take(&peers, "127.0.0.2".parse().unwrap(), 1).is_some());
        // IPv4 clients of a dual-stack listener count by their own address, not as one /64
        let _m = PeerSlot::take(&peers, "::ffff:192.0.2.1".parse().unwrap(), 1).unwrap();
        assert!(PeerSlot::take(&peers, "::ffff:192.0.2.2".parse().unwrap(), 1).is_some());
        assert!(PeerSlot::take(&peers, "192.0.2.1".parse().unwrap(), 1).is_none());
    }
}

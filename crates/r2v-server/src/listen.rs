//! Serving HTTP/1.1 with limits a slow or hostile client cannot get around (hyper's own
//! settings, and tower-http's body timeout):
//! - a cap on open connections: past it, the next connection waits in the kernel's backlog
//!   until one closes, so one client cannot exhaust the process's file descriptors;
//! - a time limit for a request's headers (hyper's `header_read_timeout`), which starts when
//!   hyper waits for a request, so it also closes idle keep-alive connections and connections
//!   that dribble their headers;
//! - an idle limit on request bodies (`RequestBodyTimeoutLayer`): a body that stalls for
//!   longer is cut off and answered with 408.
//!
//! Responses may take as long as they take (SSE status streams, the sync `/run` route):
//! nothing here limits them. Shutdown is graceful: connections finish their requests.

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// The connection limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers (and for the next request on an idle connection).
    pub header_timeout: Duration,
    /// Longest pause inside a request body.
    pub body_idle_timeout: Duration,
}

/// How long shutting down waits for open requests.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let service = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_idle_timeout))
        .service(router);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors, or the peer left before accept: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection = builder.serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after {DRAIN:?}; closing them");
    }
    Ok(())
}

//! Accepting and serving HTTP/1.1 connections so that slow or abusive clients
//! cannot hold the server (SPEC §11).
//!
//! `axum::serve` has no header, body or idle timeouts and no connection cap, so
//! Keel runs its own accept loop over hyper:
//! - **Connection cap**: a connection is accepted only with a permit
//!   (`max_connections`); past that, new connections wait in the kernel's backlog
//!   while existing ones keep being served.
//! - **Header read** and **idle** timeouts: a watchdog per connection sees the
//!   bytes read (counted by [`Watched`]) and the requests in flight. With no request
//!   in flight, a connection that sent part of a request head must finish it within
//!   `header_read_timeout_ms`; one that sent nothing is closed after
//!   `idle_timeout_ms`. A request being handled (a long poll, say) is never cut.
//! - **Body read** timeout: every request body must arrive within
//!   `body_read_timeout_ms` of its head ([`DeadlineBody`]); a late body is a 408.
//! - On shutdown the listener closes, idle connections close at once, and
//!   in-flight requests finish.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo, Router};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{watch, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tower::ServiceExt;

use crate::limits::Limits;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting,
/// lets in-flight requests finish, and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let limits = Arc::new(limits);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits.clone(),
            closing.clone(),
            permit,
        ));
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// What the watchdog of one connection reads.
#[derive(Default)]
struct Activity {
    bytes_read: AtomicU64,
    in_flight: AtomicUsize,
    requests_done: AtomicU64,
}

/// Counts a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests_done.fetch_add(1, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Arc<Limits>,
    mut closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let body_timeout = limits.body_read_timeout();
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = InFlight::start(&requests);
        let rolling = is_object_upload(&request);
        let mut request =
            request.map(|body| Body::new(DeadlineBody::new(body, body_timeout, rolling)));
        request.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Hyper's own limits sit above Keel's, so that what a realistic client
        // can send past Keel's limits is answered by Keel as a problem document
        // (414/431 in the edge) rather than by hyper with an empty body.
        .max_headers(limits.max_headers.saturating_mul(2).max(100));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);

    let check_every = limits
        .header_read_timeout()
        .min(limits.idle_timeout())
        .div_f64(4.0)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(check_every);
    let mut watchdog = Watchdog::new(&activity);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = closing.changed(), if !shutting_down => {
                shutting_down = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if let Some(why) = watchdog.check(&activity, &limits) {
                    tracing::debug!(%peer, why, "closing connection");
                    return;
                }
            }
        }
    }
}

/// Decides, from the bytes read and the requests seen, whether a connection has
/// overstayed: `None` to keep it.
struct Watchdog {
    /// Since when no request has been in flight.
    quiet_since: Instant,
    /// Bytes read when it went quiet; more since means a head is arriving.
    read_mark: u64,
    requests_seen: u64,
    head_started: Option<Instant>,
}

impl Watchdog {
    fn new(activity: &Activity) -> Self {
        Self {
            quiet_since: Instant::now(),
            read_mark: activity.bytes_read.load(Ordering::SeqCst),
            requests_seen: 0,
            head_started: None,
        }
    }

    fn check(&mut self, activity: &Activity, limits: &Limits) -> Option<&'static str> {
        let now = Instant::now();
        let done = activity.requests_done.load(Ordering::SeqCst);
        if activity.in_flight.load(Ordering::SeqCst) > 0 || done != self.requests_seen {
            self.requests_seen = done;
            self.quiet_since = now;
            self.read_mark = activity.bytes_read.load(Ordering::SeqCst);
            self.head_started = None;
            return None;
        }
        if activity.bytes_read.load(Ordering::SeqCst) > self.read_mark {
            let started = *self.head_started.get_or_insert(now);
            (now.duration_since(started) >= limits.header_read_timeout())
                .then_some("the request head did not arrive in time")
        } else {
            (now.duration_since(self.quiet_since) >= limits.idle_timeout()).then_some("idle")
        }
    }
}

/// A TCP stream that counts the bytes read from it.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity
                .bytes_read
                .fetch_add(read as u64, Ordering::SeqCst);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The error a request body gives when it did not arrive in time; extractors turn
/// it into 408 (see `extract::JsonBody`).
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that must be complete by a deadline set when its head arrived,
/// however slowly it trickles. The timer is armed only when the body first has to
/// wait for the network, so the many requests whose body is empty or already
/// buffered never touch the timer wheel.
///
/// An object upload may be far larger than any JSON body, so its deadline rolls:
/// each piece of the body must arrive within the timeout of the one before.
pub struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    rolling: bool,
    due: tokio::time::Instant,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration, rolling: bool) -> Self {
        Self {
            inner,
            timeout,
            rolling,
            due: tokio::time::Instant::now() + timeout,
            deadline: None,
        }
    }
}

/// `PUT /v1/buckets/{bucket}/objects/{key…}`: a body whose deadline rolls.
fn is_object_upload<B>(request: &hyper::Request<B>) -> bool {
    request.method() == hyper::Method::PUT
        && request
            .uri()
            .path()
            .strip_prefix("/v1/buckets/")
            .is_some_and(|rest| rest.split('/').nth(1) == Some("objects"))
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if self.rolling {
                let due = tokio::time::Instant::now() + self.timeout;
                self.due = due;
                if let Some(deadline) = self.deadline.as_mut() {
                    deadline.as_mut().reset(due);
                }
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let due = self.due;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or one of its sources) is a body that did not arrive in time.
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        current = e.source();
    }
    false
}

//! The rtnetlink client the roles share (the `rtnetlink` crate over
//! `netlink-packet-route`): link indexes by name, routes, proxy neighbours
//! and policy rules. Each request waits for the kernel's ACK, and the
//! kernel's errno comes back as a typed error.
//!
//! rtnetlink is async, but its callers here are sync (the home agent's
//! engine thread, the TUN forwarder's setup and teardown, `Drop`). So an
//! [`Rtnl`] owns a small dedicated thread with a current-thread runtime
//! that drives the netlink connection and runs the requests one at a time,
//! in order; a caller blocks on a plain channel for the answer, never on a
//! runtime (`block_on` inside async code would stall a tokio worker). Async
//! callers run the sync callers on `spawn_blocking`.
//!
//! The thread joins the caller's network namespace before it opens its
//! socket: tests drive the roles from threads that entered a namespace
//! with `setns`, and the kernel binds a netlink socket to the namespace of
//! the thread that opens it.

use std::{future::Future, os::fd::AsRawFd as _, pin::Pin, sync::mpsc as std_mpsc};

use futures_util::{StreamExt as _, TryStreamExt as _};
use netlink_packet_route::{
    neighbour::NeighbourMessage,
    route::{RouteMessage, RouteProtocol},
    rule::{RuleAttribute, RuleMessage},
};
use rtnetlink::{Handle, IpVersion};
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("starting the rtnetlink thread: {0}")]
    Start(std::io::Error),
    #[error("the rtnetlink thread is gone (it could not open its socket, or it stopped)")]
    Gone,
    #[error("the kernel refused the request: {0}")]
    Refused(std::io::Error),
    #[error("no interface named {0:?}")]
    NoSuchLink(String),
    #[error("rtnetlink: {0}")]
    Protocol(rtnetlink::Error),
}

impl From<rtnetlink::Error> for NetlinkError {
    fn from(e: rtnetlink::Error) -> Self {
        match e {
            rtnetlink::Error::NetlinkError(m) => Self::Refused(m.to_io()),
            e => Self::Protocol(e),
        }
    }
}

impl NetlinkError {
    /// The errno of a refusal.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Refused(io) => io.raw_os_error(),
            _ => None,
        }
    }

    /// Whether a refusal means "it was not there" (for idempotent removal).
    pub fn is_absent(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT | libc::ESRCH | libc::ENODEV)
        )
    }

    /// Whether a refusal means "it is there already" (for idempotent adds).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Job = Box<dyn FnOnce(Handle) -> BoxFuture + Send>;

/// A handle on the dedicated rtnetlink thread; dropping it stops the
/// thread.
pub struct Rtnl {
    jobs: mpsc::UnboundedSender<Job>,
}

impl std::fmt::Debug for Rtnl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rtnl")
    }
}

impl Rtnl {
    /// Starts the thread in the calling thread's network namespace.
    pub fn new() -> Result<Self, NetlinkError> {
        let netns = std::fs::File::open("/proc/thread-self/ns/net").map_err(NetlinkError::Start)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Start)?;
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("rtnetlink".into())
            .spawn(move || {
                // SAFETY: setns with a namespace fd we hold open; it changes
                // only this thread's namespace.
                if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    tracing::warn!(error = %std::io::Error::last_os_error(), "rtnetlink thread: setns");
                    return;
                }
                drop(netns);
                rt.block_on(async move {
                    let (conn, handle, _) = match rtnetlink::new_connection() {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "rtnetlink socket");
                            return;
                        }
                    };
                    tokio::spawn(conn);
                    // One request at a time: a delete issued before an add
                    // reaches the kernel first.
                    while let Some(job) = rx.recv().await {
                        job(handle.clone()).await;
                    }
                });
            })
            .map_err(NetlinkError::Start)?;
        Ok(Self { jobs })
    }

    /// Runs `f` on the rtnetlink thread and waits for its result. Sync
    /// callers only (it blocks the calling thread).
    pub fn call<T, F, Fut>(&self, f: F) -> Result<T, NetlinkError>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, NetlinkError>> + Send + 'static,
    {
        let (tx, rx) = std_mpsc::sync_channel(1);
        let job: Job = Box::new(move |h| {
            Box::pin(async move {
                let _ = tx.send(f(h).await);
            })
        });
        self.jobs.send(job).map_err(|_| NetlinkError::Gone)?;
        rx.recv().map_err(|_| NetlinkError::Gone)?
    }

    /// The index of interface `name`.
    pub fn link_index(&self, name: &str) -> Result<u32, NetlinkError> {
        let name = name.to_owned();
        self.call(move |h| async move {
            let mut links = h.link().get().match_name(name.clone()).execute();
            match links.try_next().await {
                Ok(Some(l)) => Ok(l.header.index),
                Ok(None) => Err(NetlinkError::NoSuchLink(name)),
                Err(e) => match NetlinkError::from(e) {
                    e if e.is_absent() => Err(NetlinkError::NoSuchLink(name)),
                    e => Err(e),
                },
            }
        })
    }

    /// Adds (or replaces) a route.
    pub fn replace_route(&self, m: RouteMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move { Ok(h.route().add(m).replace().execute().await?) })
    }

    /// Removes a route (the kernel's errno when it is not there).
    pub fn delete_route(&self, m: RouteMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move { Ok(h.route().del(m).execute().await?) })
    }

    /// Adds (or replaces) a neighbour entry.
    pub fn replace_neighbour(&self, m: NeighbourMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move {
            let index = m.header.ifindex;
            let mut req = h
                .neighbours()
                // Placeholder destination: the whole message is ours below.
                .add(index, std::net::Ipv4Addr::UNSPECIFIED.into())
                .replace();
            *req.message_mut() = m;
            Ok(req.execute().await?)
        })
    }

    /// Removes a neighbour entry.
    pub fn delete_neighbour(&self, m: NeighbourMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move { Ok(h.neighbours().del(m).execute().await?) })
    }

    /// Adds a policy rule (refused with EEXIST if an equal one exists).
    pub fn add_rule(&self, m: RuleMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move {
            let mut req = h.rule().add();
            *req.message_mut() = m;
            Ok(req.execute().await?)
        })
    }

    /// Removes one policy rule matching every field of `m`.
    pub fn delete_rule(&self, m: RuleMessage) -> Result<(), NetlinkError> {
        self.call(move |h| async move { Ok(h.rule().del(m).execute().await?) })
    }

    /// The IPv4 policy rules tagged with `protocol`.
    pub fn rules_of(&self, protocol: RouteProtocol) -> Result<Vec<RuleMessage>, NetlinkError> {
        self.call(move |h| async move {
            let all: Vec<RuleMessage> = h
                .rule()
                .get(IpVersion::V4)
                .execute()
                .map(|r| r.map_err(NetlinkError::from))
                .try_collect()
                .await?;
            Ok(all
                .into_iter()
                .filter(|r| r.attributes.contains(&RuleAttribute::Protocol(protocol)))
                .collect())
        })
    }
}

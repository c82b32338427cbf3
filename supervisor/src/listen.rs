//! The sockets omnid accepts on: a TCP address or a unix socket from
//! `listen` (with `listen_mode`, `listen_owner`, `listen_group`), the plain
//! probe listener (`probe_listen`), or the sockets systemd passes
//! (`LISTEN_FDS`, socket activation), and the accepted stream of either kind.

use crate::config::{parse_mode, Config, ListenAddr};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// Why a listener could not be opened; messages name the key or the source.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error("`listen`: {path} exists and is not a socket; remove it or choose another path")]
    NotASocket { path: String },
    #[error("`listen`: another process is listening on {path}")]
    InUse { path: String },
    #[error("`{key}`: no such {what} `{name}`")]
    NoSuchId {
        key: &'static str,
        what: &'static str,
        name: String,
    },
    #[error("`{key}`: cannot apply it to {path}: {reason}")]
    Apply {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("socket activation: socket {index} passed by systemd is neither a TCP nor a unix stream listener")]
    Inherited { index: usize },
}

/// A listener as std gives it, before the runtime exists (systemd's).
pub enum Inherited {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

/// Takes the sockets systemd passed (`LISTEN_FDS`/`LISTEN_PID`, from fd 3),
/// marks them close-on-exec (workers must never inherit a listener) and
/// clears the variables. Call before any thread or worker starts.
pub fn take_systemd_sockets() -> Result<Vec<Inherited>, ListenError> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::with_capacity(fds.len());
    for index in 0..fds.len() {
        if let Ok(Some(l)) = fds.take_tcp_listener(index) {
            out.push(Inherited::Tcp(l));
        } else if let Ok(Some(l)) = fds.take_unix_listener(index) {
            out.push(Inherited::Unix(l));
        } else {
            return Err(ListenError::Inherited { index });
        }
    }
    Ok(out)
}

/// A socket being accepted on.
pub enum Listener {
    Tcp(TcpListener),
    /// `path`: the socket file omnid created, removed when it stops
    /// (systemd's own sockets are systemd's to remove).
    Unix {
        listener: UnixListener,
        path: Option<PathBuf>,
    },
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// A local process on the unix socket (access is the socket file's
    /// permissions).
    Unix,
}

impl Peer {
    /// The address a request is charged to: a unix-socket caller counts as
    /// the loopback address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Peer::Tcp(a) => a,
            Peer::Unix => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl Listener {
    /// Opens `listen` of the configuration.
    pub fn bind_service(c: &Config) -> Result<Listener, ListenError> {
        match c.listen_addr() {
            ListenAddr::Tcp(addr) => Self::bind_tcp(addr),
            ListenAddr::Unix(path) => bind_unix(c, &path),
        }
    }

    pub fn bind_tcp(addr: SocketAddr) -> Result<Listener, ListenError> {
        let l = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .and_then(TcpListener::from_std)
            .map_err(|e| ListenError::Bind {
                addr: addr.to_string(),
                reason: e.kind().to_string(),
            })?;
        Ok(Listener::Tcp(l))
    }

    /// A socket systemd passed.
    pub fn inherited(s: Inherited) -> Result<Listener, ListenError> {
        let err = |e: io::Error| ListenError::Bind {
            addr: "a socket passed by systemd".into(),
            reason: e.kind().to_string(),
        };
        Ok(match s {
            Inherited::Tcp(l) => {
                l.set_nonblocking(true).map_err(err)?;
                Listener::Tcp(TcpListener::from_std(l).map_err(err)?)
            }
            Inherited::Unix(l) => {
                l.set_nonblocking(true).map_err(err)?;
                Listener::Unix {
                    listener: UnixListener::from_std(l).map_err(err)?,
                    path: None,
                }
            }
        })
    }

    /// Where it listens, as the log and `listening on` show it.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "a TCP socket".into()),
            Listener::Unix { listener, .. } => match listener.local_addr() {
                Ok(a) => match a.as_pathname() {
                    Some(p) => format!("unix:{}", p.display()),
                    None => "an unnamed unix socket".into(),
                },
                Err(_) => "a unix socket".into(),
            },
        }
    }

    pub async fn accept(&self) -> io::Result<(Socket, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Ok((Socket::Tcp(s), Peer::Tcp(peer)))
            }
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept().await?;
                Ok((Socket::Unix(s), Peer::Unix))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            path: Some(path), ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds a unix socket at `path`: a stale socket file from an earlier run
/// (nobody accepts on it) is replaced; anything else there is an error.
/// Then the mode, owner and group of the configuration.
fn bind_unix(c: &Config, path: &Path) -> Result<Listener, ListenError> {
    use std::os::unix::fs::FileTypeExt;
    let shown = path.display().to_string();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ListenError::NotASocket { path: shown });
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => return Err(ListenError::InUse { path: shown }),
            Err(_) => {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let std_listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|e| ListenError::Bind {
            addr: format!("unix:{shown}"),
            reason: e.kind().to_string(),
        })?;
    // From here on the file is ours: dropping the listener removes it.
    let listener = std_listener
        .set_nonblocking(true)
        .and_then(|_| UnixListener::from_std(std_listener))
        .map_err(|e| ListenError::Bind {
            addr: format!("unix:{shown}"),
            reason: e.kind().to_string(),
        })?;
    let l = Listener::Unix {
        listener,
        path: Some(path.to_path_buf()),
    };
    apply_ownership(c, path)?;
    Ok(l)
}

fn apply_ownership(c: &Config, path: &Path) -> Result<(), ListenError> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display().to_string();
    let apply_err = |key: &'static str| {
        let shown = shown.clone();
        move |e: io::Error| ListenError::Apply {
            key,
            path: shown,
            reason: e.kind().to_string(),
        }
    };
    let uid = match c.listen_owner.as_str() {
        "" => None,
        name => Some(user_id(name)?),
    };
    let gid = match c.listen_group.as_str() {
        "" => None,
        name => Some(group_id(name)?),
    };
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(path, uid, gid)
            .map_err(io::Error::from)
            .map_err(apply_err(if uid.is_some() {
                "listen_owner"
            } else {
                "listen_group"
            }))?;
    }
    let mode = parse_mode(&c.listen_mode).unwrap_or(0o660);
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(apply_err("listen_mode"))?;
    Ok(())
}

fn user_id(name: &str) -> Result<nix::unistd::Uid, ListenError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Uid::from_raw(n));
    }
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        _ => Err(ListenError::NoSuchId {
            key: "listen_owner",
            what: "user",
            name: name.to_string(),
        }),
    }
}

fn group_id(name: &str) -> Result<nix::unistd::Gid, ListenError> {
    if let Ok(n) = name.parse::<u32>() {
        return Ok(nix::unistd::Gid::from_raw(n));
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(ListenError::NoSuchId {
            key: "listen_group",
            what: "group",
            name: name.to_string(),
        }),
    }
}

/// An accepted connection's socket.
pub enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Socket::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Tcp(s) => s.is_write_vectored(),
            Socket::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

//! The one loopback HTTP/1.1 server of the harness: binds `127.0.0.1:0`,
//! serves each connection on its own thread (keep-alive: requests are read
//! until the peer closes), and hands every request to a handler that
//! returns a JSON answer, or `None` to close the connection without one.
//! Stops accepting on drop.
//!
//! The echo app ([`crate::upstream`]), the chain app
//! ([`crate::topology::app`]) and the document server
//! ([`crate::topology::docs`]) are handlers on it.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::http::{read_message, BodyDefault, Message};

/// What the server answers: a status and a JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// The body, sent as `application/json`.
    pub body: Vec<u8>,
}

impl Reply {
    /// `200` with `body`.
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply { status: 200, body }
    }
}

/// A running server; stops accepting on drop.
pub struct LoopbackServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl LoopbackServer {
    /// Binds `127.0.0.1:0` and serves every request with `handler`. `name`
    /// names the threads (`<name>`, `<name>-conn`) and the panic messages.
    pub fn start<H>(name: &str, handler: H) -> LoopbackServer
    where
        H: Fn(&Message) -> Option<Reply> + Send + Sync + 'static,
    {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind {name}: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{name} address: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let conn_name = format!("{name}-conn");
        let acceptor = {
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let handler = Arc::clone(&handler);
                        let _ = thread::Builder::new()
                            .name(conn_name.clone())
                            .spawn(move || serve(conn, &*handler));
                    }
                })
                .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
        };
        LoopbackServer {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port (what an Envoy cluster points at).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, handler: &(impl Fn(&Message) -> Option<Reply> + ?Sized)) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Ok(Some(msg)) = read_message(&mut reader, BodyDefault::Empty) {
        let Some(reply) = handler(&msg) else { return };
        let head = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.status,
            reason_phrase(reply.status),
            reply.body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&reply.body).is_err() {
            return;
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

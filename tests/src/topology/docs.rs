//! A tiny HTTP/1.1 server for the documents the filter fetches over an
//! Envoy cluster (`key_fetch`): key sets (JWKS, SPIFFE bundles) and
//! revocation lists. A test changes what a path answers at any time
//! (rotate keys, revoke, answer 500, reset connections) and counts fetches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::http::Message;
use crate::loopback::{LoopbackServer, Reply};

/// What a path answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// A status and a JSON body.
    Doc(u16, String),
    /// Close the connection without answering (the server "stopped").
    Reset,
}

#[derive(Default)]
struct State {
    answers: HashMap<String, Answer>,
    hits: HashMap<String, u64>,
}

/// A running document server (a [`LoopbackServer`]); stops on drop.
pub struct DocServer {
    server: LoopbackServer,
    state: Arc<Mutex<State>>,
}

impl DocServer {
    /// Binds `127.0.0.1:0` and serves. Unknown paths answer 404.
    pub fn start() -> DocServer {
        let state = Arc::new(Mutex::new(State::default()));
        let server = {
            let state = Arc::clone(&state);
            LoopbackServer::start("doc-server", move |msg| answer(&state, msg))
        };
        DocServer { server, state }
    }

    /// The port Envoy's key cluster points at.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// `path` answers 200 with `json` from now on.
    pub fn serve_json(&self, path: &str, json: &serde_json::Value) {
        self.set(path, Answer::Doc(200, json.to_string()));
    }

    /// `path` answers `answer` from now on.
    pub fn set(&self, path: &str, answer: Answer) {
        if let Ok(mut s) = self.state.lock() {
            s.answers.insert(path.to_owned(), answer);
        }
    }

    /// How many times `path` was requested.
    pub fn hits(&self, path: &str) -> u64 {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.hits.get(path).copied())
            .unwrap_or(0)
    }

    /// Waits until `path` has been requested `more` more times than
    /// `since` (bounded by `timeout`); panics otherwise.
    pub fn wait_hits(&self, path: &str, since: u64, more: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.hits(path) < since + more {
            assert!(
                Instant::now() < deadline,
                "{path} was fetched {} times, expected {} within {timeout:?}",
                self.hits(path) - since,
                more
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn answer(state: &Mutex<State>, msg: &Message) -> Option<Reply> {
    let path = msg.start_line.split(' ').nth(1).unwrap_or("").to_owned();
    let answer = {
        let mut s = state.lock().ok()?;
        *s.hits.entry(path.clone()).or_insert(0) += 1;
        s.answers.get(&path).cloned()
    };
    match answer {
        Some(Answer::Doc(status, body)) => Some(Reply {
            status,
            body: body.into_bytes(),
        }),
        Some(Answer::Reset) => None,
        None => Some(Reply {
            status: 404,
            body: b"{}".to_vec(),
        }),
    }
}

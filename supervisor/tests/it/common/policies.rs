//! Helpers for the stored-policy API (`/api/v1/policies…`): a client bound
//! to a server and a token, policy texts that tell their revisions apart
//! by their decision, and servers sharing one store.
#![allow(dead_code)]

use super::{raw_request, Resp, Server, TempDir};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

/// A valid policy whose action fires below `threshold` percent of
/// `Battery`, and whose INTENT carries `tag` (so two texts differ even
/// with the same threshold).
pub fn policy_text(tag: &str, threshold: u32) -> String {
    format!(
        "INTENT: {tag}\nACTOR:\n- Primary: Ops\nCONTEXT:\n- Domain: Test\n\
         RULE:\n- IF Battery < {threshold}% THEN ReturnToHome\nCONSTRAINT:\n- Technical: none\n\
         IMPACT:\n- Benefit: safety\nTRACE:\n- Evidence: example\n"
    )
}

/// `sha256:<hex>` of a text, as the store and the workers name it.
pub fn sha256_id(text: &str) -> String {
    let d = Sha256::digest(text.as_bytes());
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `"N"`, as an ETag and `If-Match` carry a revision.
pub fn etag(n: u64) -> String {
    format!("\"{n}\"")
}

/// Calls to the stored-policy API of one server, as one caller.
pub struct Policies<'a> {
    pub srv: &'a Server,
    auth: Option<String>,
}

impl<'a> Policies<'a> {
    /// Auth off (or no token).
    pub fn anonymous(srv: &'a Server) -> Policies<'a> {
        Policies { srv, auth: None }
    }

    /// With `Authorization: Bearer TOKEN`.
    pub fn with_token(srv: &'a Server, token: &str) -> Policies<'a> {
        Policies {
            srv,
            auth: Some(format!("Bearer {token}")),
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Resp {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &self.auth {
            h.push(("Authorization", a));
        }
        self.srv.request(method, path, &h, body)
    }

    pub fn put(&self, name: &str, text: &str) -> Resp {
        self.put_with(name, text, "", None)
    }

    /// `query`: "" or e.g. "?activate=false".
    pub fn put_with(&self, name: &str, text: &str, query: &str, if_match: Option<&str>) -> Resp {
        let mut h = vec![("Content-Type", "text/plain")];
        if let Some(m) = if_match {
            h.push(("If-Match", m));
        }
        self.call(
            "PUT",
            &format!("/api/v1/policies/{name}{query}"),
            &h,
            Some(text.as_bytes()),
        )
    }

    pub fn list(&self) -> Resp {
        self.call("GET", "/api/v1/policies", &[], None)
    }

    pub fn get(&self, name: &str) -> Resp {
        self.call("GET", &format!("/api/v1/policies/{name}"), &[], None)
    }

    pub fn history(&self, name: &str) -> Resp {
        self.call(
            "GET",
            &format!("/api/v1/policies/{name}/history"),
            &[],
            None,
        )
    }

    pub fn revision(&self, name: &str, n: u64) -> Resp {
        self.call(
            "GET",
            &format!("/api/v1/policies/{name}/revisions/{n}"),
            &[],
            None,
        )
    }

    pub fn activate(&self, name: &str, n: u64, if_match: Option<&str>) -> Resp {
        let body = serde_json::to_vec(&json!({ "revision": n })).unwrap();
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(m) = if_match {
            h.push(("If-Match", m));
        }
        self.call(
            "POST",
            &format!("/api/v1/policies/{name}/activate"),
            &h,
            Some(&body),
        )
    }

    pub fn rollback(&self, name: &str, if_match: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = if_match.map(|m| ("If-Match", m)).into_iter().collect();
        self.call(
            "POST",
            &format!("/api/v1/policies/{name}/rollback"),
            &h,
            None,
        )
    }

    pub fn delete(&self, name: &str, if_match: Option<&str>) -> Resp {
        let h: Vec<(&str, &str)> = if_match.map(|m| ("If-Match", m)).into_iter().collect();
        self.call("DELETE", &format!("/api/v1/policies/{name}"), &h, None)
    }

    pub fn evaluate(&self, name: &str, body: &Value) -> Resp {
        let b = serde_json::to_vec(body).unwrap();
        self.call(
            "POST",
            &format!("/api/v1/policies/{name}/evaluate"),
            &[("Content-Type", "application/json")],
            Some(&b),
        )
    }

    /// The revision an evaluation of `name` used (panics unless 200).
    pub fn evaluated_revision(&self, name: &str) -> u64 {
        let r = self.evaluate(name, &json!({ "context": { "Battery": 15 } }));
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["policy"]["revision"].as_u64().unwrap()
    }
}

/// One evaluate-by-name request on its own connection, unchecked against
/// the document (for load threads).
pub fn evaluate_raw(addr: SocketAddr, name: &str, auth: Option<&str>) -> std::io::Result<Resp> {
    let body = br#"{"context":{"Battery":15}}"#;
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    raw_request(
        addr,
        "POST",
        &format!("/api/v1/policies/{name}/evaluate"),
        &h,
        Some(body),
    )
}

/// One PUT on its own connection, unchecked against the document.
pub fn put_raw(addr: SocketAddr, name: &str, text: &str) -> std::io::Result<Resp> {
    raw_request(
        addr,
        "PUT",
        &format!("/api/v1/policies/{name}"),
        &[("Content-Type", "text/plain")],
        Some(text.as_bytes()),
    )
}

/// The test configuration (2 workers, rate limiting off, …) plus `extra`,
/// started with `env` (e.g. `OMNID_STORE_URL` for a shared PostgreSQL).
pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new("reg");
    let path = dir.path("omnid.toml");
    std::fs::write(&path, super::test_config(extra)).unwrap();
    Server::start_in_env(dir, path, env)
}

/// The value of `omnid_policy_served_revision{tenant,policy}` on `srv`.
pub fn served_metric(srv: &Server, tenant: &str, policy: &str) -> Option<u64> {
    let text = srv.get("/metrics").text();
    let prefix =
        format!("omnid_policy_served_revision{{tenant=\"{tenant}\",policy=\"{policy}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

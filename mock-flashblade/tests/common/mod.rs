//! A small REST client for testing the simulator over its real socket.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use mock_flashblade::MockHandle;
use serde_json::Value;

pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
    pub api_token: String,
}

pub fn client_for(handle: &MockHandle) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = &handle.ca_pem {
        for c in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Api {
    pub fn new(handle: &MockHandle) -> Api {
        Api {
            client: client_for(handle),
            base: handle.url.clone(),
            token: None,
            api_token: handle.api_token.clone(),
        }
    }

    pub async fn login(&mut self) {
        let r = self
            .client
            .post(format!("{}/api/login", self.base))
            .header("api-token", &self.api_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        self.token = Some(r.headers()["x-auth-token"].to_str().unwrap().to_string());
    }

    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Reply, reqwest::Error> {
        let url = format!("{}/api/2.17/{}", self.base, path);
        let mut rb = self.client.request(method.parse().unwrap(), url);
        if let Some(t) = &self.token {
            rb = rb.header("x-auth-token", t);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let r = rb.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.try_call(method, path, body).await.expect("request")
    }
}

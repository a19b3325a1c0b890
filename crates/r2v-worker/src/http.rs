//! [`HttpSource`]: a [`WorkSource`] over the server's worker API, for workers on other
//! machines (`r2v worker --api URL --token T`). Workers never hold database credentials.
//!
//! Routes, all under `{api}/worker/v1` with `Authorization: Bearer <token>`:
//! `POST claim`, `POST requests/{id}/heartbeat`, `POST requests/{id}/logs`,
//! `PUT requests/{id}/output`, `POST requests/{id}/complete`, `POST requests/{id}/release`.

use crate::wire::{CompleteBody, LogsBody, OutputQuery, OutputStored, ReleaseBody, WorkerBody};
use crate::{Job, LeaseState, LogEntry, Outcome, SourceError, WorkSource};
use async_trait::async_trait;
use r2v_media::MediaError;
use r2v_media::reference::{FileResolver, Resolved};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// A work source reached over HTTP.
#[derive(Clone)]
pub struct HttpSource {
    client: reqwest::Client,
    api: String,
    token: String,
    worker_id: String,
}

impl HttpSource {
    /// A source for the API at `api` (e.g. `http://10.0.0.5:8080`).
    pub fn new(api: &str, token: &str, worker_id: &str) -> Result<Self, SourceError> {
        // The fetcher installs the process-wide TLS crypto provider; building one does that.
        let _ = r2v_media::fetch::Fetcher::new(r2v_media::fetch::FetchPolicy::default());
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| SourceError(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            api: api.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            worker_id: worker_id.to_owned(),
        })
    }

    fn worker_body(&self) -> WorkerBody {
        WorkerBody {
            worker_id: self.worker_id.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/worker/v1/{path}", self.api)
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> Result<(u16, Vec<u8>), SourceError> {
        let response = self
            .client
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).map_err(|e| SourceError(e.to_string()))?)
            .send()
            .await
            .map_err(|e| SourceError(format!("POST {path}: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SourceError(format!("POST {path}: {e}")))?;
        if status >= 400 {
            return Err(SourceError(format!(
                "POST {path}: {status} {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        Ok((status, bytes.to_vec()))
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SourceError> {
    serde_json::from_slice(bytes)
        .map_err(|e| SourceError(format!("unexpected answer from the API: {e}")))
}

#[async_trait]
impl WorkSource for HttpSource {
    async fn claim(&self) -> Result<Option<Job>, SourceError> {
        let (status, body) = self.post("claim", &self.worker_body()).await?;
        if status == 204 {
            Ok(None)
        } else {
            parse(&body).map(Some)
        }
    }

    async fn heartbeat(&self, id: &str) -> Result<LeaseState, SourceError> {
        let (_, body) = self
            .post(&format!("requests/{id}/heartbeat"), &self.worker_body())
            .await?;
        parse(&body)
    }

    async fn append_logs(&self, id: &str, lines: Vec<LogEntry>) -> Result<(), SourceError> {
        self.post(
            &format!("requests/{id}/logs"),
            &LogsBody {
                worker_id: self.worker_id.clone(),
                lines,
            },
        )
        .await
        .map(drop)
    }

    async fn store_output(&self, id: &str, file: &Path) -> Result<String, SourceError> {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(|e| SourceError(format!("reading {}: {e}", file.display())))?;
        let query = OutputQuery {
            worker_id: self.worker_id.clone(),
            file_name: Some("output.mp4".to_owned()),
        };
        let mut url = url::Url::parse(&self.url(&format!("requests/{id}/output")))
            .map_err(|e| SourceError(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("worker_id", &query.worker_id)
            .extend_pairs(query.file_name.as_deref().map(|name| ("file_name", name)));
        let response = self
            .client
            .put(url)
            .bearer_auth(&self.token)
            .header("content-type", "video/mp4")
            .body(bytes)
            .send()
            .await
            .map_err(|e| SourceError(format!("uploading the output: {e}")))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        if status >= 400 {
            return Err(SourceError(format!(
                "uploading the output: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        parse::<OutputStored>(&body).map(|stored| stored.url)
    }

    async fn complete(
        &self,
        id: &str,
        outcome: Outcome,
        inference_time: f64,
    ) -> Result<(), SourceError> {
        let body = CompleteBody {
            worker_id: self.worker_id.clone(),
            outcome,
            inference_time,
        };
        self.post(&format!("requests/{id}/complete"), &body)
            .await
            .map(drop)
    }

    async fn release(&self, id: &str, reason: &str) -> Result<(), SourceError> {
        self.post(
            &format!("requests/{id}/release"),
            &ReleaseBody {
                worker_id: self.worker_id.clone(),
                reason: reason.to_owned(),
            },
        )
        .await
        .map(drop)
    }

    async fn wait_for_work(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl FileResolver for HttpSource {
    /// The server's own signed file URLs (`…/files/{exp}.{sig}/<path>`, or the older
    /// `…/files/<path>?exp=…&sig=…`) are fetched from the API itself, whatever host they
    /// name, without the SSRF guard; the server checks the signature.
    fn resolve<'a>(&'a self, url: &'a str, max_bytes: u64) -> Resolved<'a> {
        Box::pin(async move {
            let parsed = url::Url::parse(url).ok()?;
            let route_path = parsed.path().strip_prefix("/files/")?;
            let signed_segment = route_path
                .split_once('/')
                .and_then(|(token, _)| token.split_once('.'))
                .is_some_and(|(exp, sig)| {
                    exp.bytes().all(|b| b.is_ascii_digit())
                        && sig.len() == 64
                        && sig.bytes().all(|b| b.is_ascii_hexdigit())
                });
            if !signed_segment && !parsed.query().is_some_and(|q| q.contains("sig=")) {
                return None;
            }
            let local = format!(
                "{}{}?{}",
                self.api,
                parsed.path(),
                parsed.query().unwrap_or_default()
            );
            let fail = |reason: String| MediaError::Download {
                url: url.to_owned(),
                reason,
            };
            let response = match self.client.get(&local).send().await {
                Ok(r) => r,
                Err(e) => return Some(Err(fail(e.to_string()))),
            };
            if !response.status().is_success() {
                return Some(Err(fail(format!(
                    "the server answered {}",
                    response.status()
                ))));
            }
            if response.content_length().is_some_and(|n| n > max_bytes) {
                return Some(Err(MediaError::TooLarge {
                    max_size: max_bytes,
                }));
            }
            Some(match response.bytes().await {
                Ok(b) if b.len() as u64 > max_bytes => Err(MediaError::TooLarge {
                    max_size: max_bytes,
                }),
                Ok(b) => Ok(b.to_vec()),
                Err(e) => Err(fail(e.to_string())),
            })
        })
    }
}

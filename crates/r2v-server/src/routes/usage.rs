//! `GET /usage`: what the calling key was charged, per UTC day and endpoint (SPEC §4).
//! Every successful request counts once, in the transaction that completed it; failed
//! and cancelled requests are free.

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Query, State};
use r2v_api::pricing::MICROUSD_PER_USD;
use r2v_store::{UsageRow, now_ms, utc_day};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The days to report, inclusive (UTC `YYYY-MM-DD`).
#[derive(Debug, Deserialize, IntoParams)]
pub struct UsageQuery {
    /// First day [default: 30 days ago].
    pub start: Option<String>,
    /// Last day [default: today].
    pub end: Option<String>,
}

/// One endpoint's usage on one day.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// UTC day of completion, `YYYY-MM-DD`.
    pub date: String,
    /// The endpoint id.
    pub endpoint: String,
    /// Successful requests.
    pub requests: i64,
    /// Seconds of output video.
    pub billable_seconds: i64,
    /// Their price in US dollars.
    pub cost_usd: f64,
}

/// The sums over the reported days.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UsageTotal {
    /// Successful requests.
    pub requests: i64,
    /// Seconds of output video.
    pub billable_seconds: i64,
    /// Their price in US dollars.
    pub cost_usd: f64,
}

/// The calling key's usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    /// The API key id (`anonymous` with auth off).
    pub key_id: String,
    /// First day reported.
    pub start: String,
    /// Last day reported.
    pub end: String,
    /// Per day and endpoint, oldest first; days without usage are left out.
    pub days: Vec<UsageDay>,
    /// The sums.
    pub total: UsageTotal,
}

fn usd(microusd: i64) -> f64 {
    microusd as f64 / MICROUSD_PER_USD as f64
}

/// A `YYYY-MM-DD` day (a real one: humantime checks the calendar), or a 400 naming the
/// parameter.
fn day(name: &str, value: &str) -> Result<String, ApiError> {
    match humantime::parse_rfc3339(&format!("{value}T00:00:00Z")) {
        Ok(_) if value.len() == 10 => Ok(value.to_owned()),
        _ => Err(ApiError::BadRequest(format!(
            "{name} must be a date as YYYY-MM-DD, not '{value}'"
        ))),
    }
}

/// `GET /usage?start=YYYY-MM-DD&end=YYYY-MM-DD`.
#[utoipa::path(get, path = "/usage", tag = "usage",
    summary = "The calling key's usage per UTC day and endpoint",
    params(UsageQuery),
    responses((status = 200, body = UsageResponse),
              (status = 400, body = crate::wire::PlainError, description = "a malformed date"),
              (status = 401, body = crate::wire::PlainError)))]
pub async fn usage(
    caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<UsageQuery>,
) -> Result<Json<UsageResponse>, ApiError> {
    let end = match &query.end {
        Some(end) => day("end", end)?,
        None => utc_day(now_ms()),
    };
    let start = match &query.start {
        Some(start) => day("start", start)?,
        None => utc_day(now_ms() - 30 * 86_400_000),
    };
    let rows = state.store.usage(caller.owner(), &start, &end).await?;
    let mut total = UsageTotal::default();
    let mut total_microusd = 0;
    let days = rows
        .into_iter()
        .map(|row: UsageRow| {
            total.requests += row.requests;
            total.billable_seconds += row.billable_seconds;
            total_microusd += row.cost_microusd;
            UsageDay {
                date: row.day,
                endpoint: row.endpoint,
                requests: row.requests,
                billable_seconds: row.billable_seconds,
                cost_usd: usd(row.cost_microusd),
            }
        })
        .collect();
    total.cost_usd = usd(total_microusd);
    Ok(Json(UsageResponse {
        key_id: caller.owner().to_owned(),
        start,
        end,
        days,
        total,
    }))
}

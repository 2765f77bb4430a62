//! The simulator's own HTTP control surface: `GET /sim/stats`, `POST /sim/faults`.
//! Not part of the exchange: not rate limited, not logged.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::faults::{FaultState, FaultUpdate};
use super::limiter::SimStats;
use super::run_state::Sim;

pub async fn stats(State(sim): State<Arc<Sim>>) -> Json<SimStats> {
    Json(sim.limiter.lock().stats())
}

pub async fn faults(State(sim): State<Arc<Sim>>, body: axum::body::Bytes) -> (StatusCode, Json<Value>) {
    match serde_json::from_slice::<FaultUpdate>(&body) {
        Ok(update) => {
            sim.faults.apply(&update);
            let state: FaultState = sim.faults.snapshot();
            (StatusCode::OK, Json(json!(state)))
        }
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e.to_string() }))),
    }
}

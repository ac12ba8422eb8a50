//! Workload metadata as JSON (`{"metadata": {...}, "id": "..."}`), the input of `peerx encode` and
//! of `mxproxy --metadata`.

use std::collections::BTreeMap;

use peerx::{Metadata, Value};

/// Reads `{"metadata": {...}, "id": "..."}`: `metadata` is the inner struct Istio's sidecars send
/// (`NAME`, `NAMESPACE`, `LABELS`, …), `id` the optional node id.
///
/// # Errors
/// A message when the bytes are not JSON or not of that shape.
pub fn metadata_from_json(bytes: &[u8]) -> Result<Metadata, String> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let serde_json::Value::Object(mut top) = json else {
        return Err("input is not a JSON object".to_owned());
    };
    let peer = match top.remove("metadata") {
        Some(serde_json::Value::Object(map)) => to_map(map),
        Some(_) => return Err("\"metadata\" is not an object".to_owned()),
        None => return Err("missing \"metadata\"".to_owned()),
    };
    let id = match top.remove("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id),
        Some(_) => return Err("\"id\" is not a string".to_owned()),
    };
    Ok(Metadata::new(peer, id))
}

fn to_value(json: serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => Value::List(items.into_iter().map(to_value).collect()),
        serde_json::Value::Object(map) => Value::Struct(to_map(map)),
    }
}

fn to_map(map: serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, Value> {
    map.into_iter().map(|(k, v)| (k, to_value(v))).collect()
}

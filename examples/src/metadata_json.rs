//! Workload metadata as JSON (`{"metadata": {...}, "id": "..."}`), the input of `peerx encode` and
//! of `mxproxy --metadata`.
//!
//! The keys Istio's sidecars send and receivers read have one type each, and a value of another
//! type is refused with a message naming the key, rather than encoded into a frame whose
//! receiver silently reads it as missing (`{"LABELS": 5, "NAME": 7}` used to give a frame with an
//! empty workload). Other keys take any JSON value.

use std::collections::BTreeMap;

use peerx::{Metadata, Value};

/// Keys whose value is a string: those the receiver reads (`peerx::Workload`) and the other
/// string fields of Istio's node metadata.
pub const STRING_KEYS: [&str; 13] = [
    "NAME",
    "NAMESPACE",
    "WORKLOAD_NAME",
    "CLUSTER_ID",
    "IDENTITY",
    "REGION",
    "AVAILABILITY_ZONE",
    "OWNER",
    "SERVICE_ACCOUNT",
    "MESH_ID",
    "ISTIO_VERSION",
    "INSTANCE_IPS",
    "APP_CONTAINERS",
];

/// Keys whose value is an object of strings: Kubernetes labels and annotations, the platform's
/// metadata.
pub const STRING_MAP_KEYS: [&str; 3] = ["LABELS", "ANNOTATIONS", "PLATFORM_METADATA"];

/// Reads `{"metadata": {...}, "id": "..."}`: `metadata` is the inner struct Istio's sidecars send
/// (`NAME`, `NAMESPACE`, `LABELS`, …), `id` the optional node id. The known keys are typed
/// ([`STRING_KEYS`], [`STRING_MAP_KEYS`]); other keys of `metadata` take any value.
///
/// # Errors
/// A message when the bytes are not JSON, not of that shape, hold another top-level key, or give
/// a known key a value of the wrong type (naming the key and what it holds).
pub fn metadata_from_json(bytes: &[u8]) -> Result<Metadata, String> {
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let mut top = match json {
        serde_json::Value::Object(top) => top,
        other => return Err(format!("input is {}, not a JSON object", kind(&other))),
    };
    let peer = match top.remove("metadata") {
        Some(serde_json::Value::Object(map)) => workload(map)?,
        Some(other) => return Err(format!("\"metadata\" is {}, not an object", kind(&other))),
        None => return Err("missing \"metadata\"".to_owned()),
    };
    let id = match top.remove("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) => Some(id),
        Some(other) => return Err(format!("\"id\" is {}, not a string", kind(&other))),
    };
    if let Some(key) = top.keys().next() {
        return Err(format!(
            "unknown key {key:?} (expected \"metadata\" and optionally \"id\")"
        ));
    }
    Ok(Metadata::new(peer, id))
}

/// What a JSON value is, for messages.
fn kind(json: &serde_json::Value) -> &'static str {
    match json {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn workload(
    map: serde_json::Map<String, serde_json::Value>,
) -> Result<BTreeMap<String, Value>, String> {
    map.into_iter()
        .map(|(key, value)| {
            let typed = if STRING_KEYS.contains(&key.as_str()) {
                match value {
                    serde_json::Value::String(s) => Value::String(s),
                    other => {
                        return Err(format!(
                            "\"metadata\".{key:?} is {}, not a string",
                            kind(&other)
                        ));
                    }
                }
            } else if STRING_MAP_KEYS.contains(&key.as_str()) {
                Value::Struct(string_map(&key, value)?)
            } else {
                to_value(value)
            };
            Ok((key, typed))
        })
        .collect()
}

fn string_map(key: &str, json: serde_json::Value) -> Result<BTreeMap<String, Value>, String> {
    let map = match json {
        serde_json::Value::Object(map) => map,
        other => {
            return Err(format!(
                "\"metadata\".{key:?} is {}, not an object of strings",
                kind(&other)
            ));
        }
    };
    map.into_iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) => Ok((name, Value::String(s))),
            other => Err(format!(
                "\"metadata\".{key:?}.{name:?} is {}, not a string",
                kind(&other)
            )),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_keys_are_typed() {
        let err = metadata_from_json(br#"{"metadata": {"LABELS": 5, "NAME": 7}}"#).unwrap_err();
        assert!(
            err.contains("\"LABELS\" is a number, not an object"),
            "{err}"
        );
        let err = metadata_from_json(br#"{"metadata": {"NAME": 7}}"#).unwrap_err();
        assert_eq!(err, "\"metadata\".\"NAME\" is a number, not a string");
        let err = metadata_from_json(br#"{"metadata": {"LABELS": {"app": true}}}"#).unwrap_err();
        assert_eq!(
            err,
            "\"metadata\".\"LABELS\".\"app\" is a boolean, not a string"
        );
        let err = metadata_from_json(br#"{"metadata": {}, "ID": "x"}"#).unwrap_err();
        assert!(err.starts_with("unknown key \"ID\""), "{err}");
        let ok = metadata_from_json(
            br#"{"metadata": {"NAME": "n", "LABELS": {"app": "a"}, "X": [1, {"y": null}]}}"#,
        )
        .unwrap();
        assert_eq!(ok.peer.len(), 3);
    }
}

// Properties of the zero-copy BSON walker on arbitrary bytes: never panics; every element's
// value lies inside the document; walking terminates; the lookups used by the MongoDB decoder
// agree with a plain walk.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use l7decode::mongo::bson::Doc;
    let Some(doc) = Doc::new(data) else { return };
    assert!(doc.len() <= data.len());
    let mut count = 0usize;
    for e in doc.elements() {
        count += 1;
        assert!(count <= doc.len(), "more elements than bytes");
        assert!(e.value.len() <= doc.len());
        let _ = (e.as_str(), e.as_f64(), e.as_i64());
        if let Some(inner) = e.as_doc() {
            assert!(inner.len() <= e.value.len());
            let _ = inner.elements().count();
        }
    }
    if let Some(first) = doc.first() {
        let key = core::str::from_utf8(first.key).ok();
        if let Some(key) = key {
            assert_eq!(doc.get(key).map(|e| e.key), Some(first.key));
        }
    }
    let _ = doc.path(&["cursor", "firstBatch"]);
}

// What the conversation checks compare between chunkings: each event in full. `Debug` of the
// records is redacted (no head bytes, SQL text or error texts), so what it leaves out is added
// through the accessors, and the checks stay as strong as when `Debug` showed everything.
// Included by each check.

/// Everything an event says: its `Debug`, then the texts `Debug` redacts.
fn full(e: &l7decode::Event) -> String {
    use l7decode::Event;
    let head = |m: &Option<l7decode::Message>| m.as_ref().map(|m| String::from_utf8_lossy(m.head()).into_owned());
    match e {
        Event::Transaction(t) => format!(
            "{e:?} uri={:?} reason={:?} request_head={:?} response_head={:?}",
            t.uri(),
            t.reason(),
            head(&t.request),
            head(&t.response)
        ),
        Event::Mysql(c) => format!(
            "{e:?} query={:?} error={:?} user={:?} schema={:?} version={:?}",
            c.query(),
            c.error_message(),
            c.user(),
            c.schema(),
            c.server_version()
        ),
        Event::Mongo(o) => format!("{e:?} errmsg={:?}", o.errmsg()),
        _ => format!("{e:?}"),
    }
}

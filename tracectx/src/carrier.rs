//! Where headers come from: any collection that can list every field of a name, matched
//! ASCII-case-insensitively, in order. Repeated fields are all seen (duplicate `traceparent` is
//! detected; `tracestate` and `baggage` fields are combined).

/// A read-only view of request headers.
pub trait Carrier {
    /// Every value of the header `name` (lowercase ASCII), in order.
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a;

    /// The first value of `name`.
    fn get_first<'a>(&'a self, name: &'a str) -> Option<&'a [u8]> {
        self.get_all(name).next()
    }
}

impl Carrier for [(&str, &str)] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl<const N: usize> Carrier for [(&str, &str); N] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.as_slice().get_all(name)
    }
}

impl Carrier for [(&[u8], &[u8])] {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| *v)
    }
}

#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
impl Carrier for http::HeaderMap {
    fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        // HeaderMap names are lowercase already; `get_all` keeps repeated fields in order.
        Self::get_all(self, name)
            .into_iter()
            .map(http::HeaderValue::as_bytes)
    }
}

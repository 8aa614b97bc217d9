//! HTTP concerns: turning arguments into a request ([`request`]), and a response into the output
//! type ([`response`]).

pub(crate) mod redact;
pub(crate) mod request;
pub(crate) mod response;

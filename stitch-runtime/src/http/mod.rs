//! HTTP concerns: turning arguments into a request ([`request`]), sending it and reading the
//! response ([`send`]), and turning a response into the output type ([`response`]).

pub(crate) mod redact;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod send;

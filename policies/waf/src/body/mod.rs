//! Request body processors: each turns body bytes into named arguments and
//! the error flags CRS checks (`REQBODY_ERROR`, `MULTIPART_*`).

pub mod json;
pub mod multipart;
pub mod urlencoded;
pub mod xml;

/// A name/value pair as the rules see it (`ARGS:name`).
pub type Pair = (String, Vec<u8>);

//! A live trace as files: the records (`schema`, JSON Lines, schema 1) and reading a trace
//! directory back into arrivals, windows, fleet and live figures (`reader`). The gateway's
//! recorder (`mark_gateway::trace`) writes them.

pub mod reader;
pub mod schema;

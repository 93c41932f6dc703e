//! The Cairn engine.

//! Storage for Cairn.

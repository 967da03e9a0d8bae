//! One module per resource; each exposes `router()`.

pub mod api_keys;
pub mod health;
pub mod login;
pub mod users;

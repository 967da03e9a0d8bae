//! One module per resource; each exposes `router()`.

pub mod api_keys;
pub mod files;
pub mod flows;
pub mod health;
pub mod login;
pub mod messages;
pub mod run;
pub mod users;
pub mod variables;

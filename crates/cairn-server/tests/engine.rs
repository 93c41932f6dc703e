//! The API's write side against the real engine: the `Control` conformance
//! suite stamped out for [`EngineControl`] over a run manager.

use cairn_core::lease::LeaseSettings;
use cairn_engine::{EngineClock, Manager, ManagerOptions};
use cairn_server::EngineControl;
use cairn_server::conformance::Setup;
use cairn_store::SqliteStore;

async fn engine(setup: Setup) -> EngineControl<SqliteStore> {
    let opts = ManagerOptions {
        owner: "server:test".into(),
        log_root: setup.log_root,
        lease: LeaseSettings::default(),
    };
    let manager = Manager::new(setup.store, EngineClock::system(), opts);
    EngineControl::new(manager, setup.catalog)
}

cairn_server::control_conformance_suite!(engine);

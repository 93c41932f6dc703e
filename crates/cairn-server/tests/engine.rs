//! The API's write side against the real engine: the `Control` conformance
//! suite stamped out for [`EngineControl`] over a run manager, on SQLite and
//! on PostgreSQL (a fresh database per test on the server at
//! `CAIRN_TEST_POSTGRES`).

use cairn_core::lease::LeaseSettings;
use cairn_engine::{EngineClock, Manager, ManagerOptions};
use cairn_server::EngineControl;
use cairn_server::conformance::Setup;
use cairn_store::Store;

async fn engine<S: Store>(setup: Setup<S>) -> EngineControl<S> {
    let opts = ManagerOptions {
        owner: "server:test".into(),
        log_root: setup.log_root,
        lease: LeaseSettings::default(),
    };
    let manager = Manager::new(setup.store, EngineClock::system(), opts);
    EngineControl::new(manager, setup.catalog)
}

mod sqlite {
    cairn_server::control_conformance_suite!(cairn_server::conformance::sqlite, super::engine);
}

mod postgres {
    cairn_server::control_conformance_suite!(cairn_server::conformance::postgres, super::engine);
}

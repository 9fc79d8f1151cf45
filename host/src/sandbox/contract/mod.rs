//! The `tally:billing` contract: the versions this host serves, and one view
//! of an adapter, whatever its version, for the rest of the sandbox.
//!
//! The host implements the current version ([`CURRENT_WORLD`],
//! `wit/billing-adapter.wit`) once: these bindings, with `host_usage`,
//! `host_output`, `egress` and the `log` import behind them. An older version
//! is a thin adaptation onto that implementation ([`v0_1`]): its bindings
//! reuse the current types where its WIT is the same, its imports convert
//! their arguments and delegate, and its exports are called through
//! [`AdapterInstance`] in the current types. Nothing outside this module
//! knows which version an adapter targets beyond its [`Contract`]'s figures.

use std::sync::Arc;

use anyhow::bail;
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker};

use super::limits::RunState;

pub mod v0_1;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "billing-adapter",
    imports: { default: trappable },
    with: { "tally:billing/usage.cursor": crate::sandbox::host_usage::UsageCursor },
});

/// The world versions this host serves, the current one last.
pub const SUPPORTED_WORLDS: &[&str] = &["0.1.0", "0.2.0"];
/// The version the host implements; older ones are adapted onto it.
pub const CURRENT_WORLD: &str = "0.2.0";

pub use self::tally::billing::types::{Granularity, Window};
pub use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Summary};

/// One version of the contract: what differs between versions for the host,
/// and how a component of it is linked.
pub struct Contract {
    /// The world's version, e.g. `"0.2.0"` (one of [`SUPPORTED_WORLDS`]).
    pub version: &'static str,
    /// Most documents one run may write.
    pub max_documents: usize,
    /// Defines the version's imports on a linker.
    add_imports: fn(&mut Linker<RunState>) -> wasmtime::Result<()>,
    /// Type-checks a pre-instantiated component against the version's exports.
    prepare: fn(InstancePre<RunState>) -> wasmtime::Result<Arc<dyn PreInstantiated>>,
}

/// The current version: the host's own implementation, called as generated.
static CURRENT: Contract = Contract {
    version: CURRENT_WORLD,
    max_documents: 10_000,
    add_imports: add_current_imports,
    prepare: |pre| Ok(Arc::new(BillingAdapterPre::new(pre)?)),
};

/// Every version served, in the order of [`SUPPORTED_WORLDS`].
static CONTRACTS: [&Contract; 2] = [&v0_1::CONTRACT, &CURRENT];

impl Contract {
    /// The current version.
    pub fn current() -> &'static Contract {
        &CURRENT
    }

    /// The version that serves an adapter built for `version`, which may be a
    /// later patch (or, from 1.0, minor) release of it; refused, naming the
    /// versions served, when none does.
    pub fn for_version(version: &str) -> anyhow::Result<&'static Contract> {
        if let Some(contract) = CONTRACTS
            .iter()
            .find(|c| breaking_part(c.version) == breaking_part(version))
        {
            return Ok(contract);
        }
        let supported: Vec<String> = SUPPORTED_WORLDS
            .iter()
            .map(|v| format!("tally:billing@{v}"))
            .collect();
        bail!(
            "the adapter targets tally:billing@{version}; this host supports {}",
            supported.join(" and ")
        )
    }
}

/// The part of a semver version that a compatible release keeps: within 0.x
/// the minor version is the breaking one, as in the component model's semver.
fn breaking_part(version: &str) -> String {
    let mut parts = version.split('.');
    let major = parts.next().unwrap_or("");
    if major == "0" {
        format!("0.{}", parts.next().unwrap_or(""))
    } else {
        major.to_owned()
    }
}

/// Defines the imports of every version served on `linker`; their names
/// carry the version, so they sit side by side.
pub fn add_imports_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    CONTRACTS
        .iter()
        .try_for_each(|contract| (contract.add_imports)(linker))
}

/// The current world's imports: `types`, `output` and `log` as generated,
/// `usage` by hand (see [`super::host_usage::add_to_linker`]).
fn add_current_imports(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    tally::billing::types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    tally::billing::output::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    tally::billing::log::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    super::host_usage::add_to_linker(linker, CURRENT_WORLD)
}

/// A component of some version, linked and type-checked: instances of it
/// are made per call.
pub trait PreInstantiated: Send + Sync {
    /// A fresh instance in `store`.
    fn instantiate(
        &self,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<Box<dyn AdapterInstance>>;
}

/// An instance's exports, called in the current version's types.
pub trait AdapterInstance {
    /// `describe`.
    fn describe(&self, store: &mut Store<RunState>) -> wasmtime::Result<Description>;
    /// `validate-config`.
    fn validate_config(
        &self,
        store: &mut Store<RunState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>>;
    /// `export`.
    fn export(
        &self,
        store: &mut Store<RunState>,
        request: &ExportRequest,
        config: &str,
    ) -> wasmtime::Result<Result<Summary, ExportError>>;
}

/// A loaded component ready to instantiate, with the contract it targets.
#[derive(Clone)]
pub struct PreparedAdapter {
    contract: &'static Contract,
    pre: Arc<dyn PreInstantiated>,
}

impl PreparedAdapter {
    /// Type-checks `pre` against `contract`'s exports.
    pub fn new(contract: &'static Contract, pre: InstancePre<RunState>) -> wasmtime::Result<Self> {
        Ok(PreparedAdapter {
            contract,
            pre: (contract.prepare)(pre)?,
        })
    }

    /// The contract the component targets.
    pub fn contract(&self) -> &'static Contract {
        self.contract
    }

    /// A fresh instance in `store`.
    pub fn instantiate(
        &self,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<Box<dyn AdapterInstance>> {
        self.pre.instantiate(store)
    }
}

impl PreInstantiated for BillingAdapterPre<RunState> {
    fn instantiate(
        &self,
        store: &mut Store<RunState>,
    ) -> wasmtime::Result<Box<dyn AdapterInstance>> {
        Ok(Box::new(BillingAdapterPre::instantiate(self, store)?))
    }
}

impl AdapterInstance for BillingAdapter {
    fn describe(&self, store: &mut Store<RunState>) -> wasmtime::Result<Description> {
        self.tally_billing_adapter().call_describe(store)
    }

    fn validate_config(
        &self,
        store: &mut Store<RunState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.tally_billing_adapter()
            .call_validate_config(store, config)
    }

    fn export(
        &self,
        store: &mut Store<RunState>,
        request: &ExportRequest,
        config: &str,
    ) -> wasmtime::Result<Result<Summary, ExportError>> {
        self.tally_billing_adapter()
            .call_export(store, request, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_are_the_supported_worlds_in_order() {
        let versions: Vec<&str> = CONTRACTS.iter().map(|c| c.version).collect();
        assert_eq!(versions, SUPPORTED_WORLDS);
        assert_eq!(SUPPORTED_WORLDS.last(), Some(&CURRENT_WORLD));
        assert_eq!(Contract::current().version, CURRENT_WORLD);
    }

    #[test]
    fn a_run_writes_100_documents_on_0_1_and_10_000_on_0_2() {
        let cap = |version| Contract::for_version(version).unwrap().max_documents;
        assert_eq!(cap("0.1.0"), 100);
        assert_eq!(cap("0.2.0"), 10_000);
    }

    /// A later release of a version served is served by it; another version
    /// is refused naming every version served.
    #[test]
    fn compatible_versions_are_served_and_others_refused_naming_the_supported_ones() {
        for (version, served) in [
            ("0.1.0", "0.1.0"),
            ("0.1.7", "0.1.0"),
            ("0.2.0", "0.2.0"),
            ("0.2.3", "0.2.0"),
        ] {
            assert_eq!(Contract::for_version(version).unwrap().version, served);
        }
        for version in ["0.3.0", "0.0.9", "1.0.0", "1.2.0", "99.0.0", ""] {
            let error = Contract::for_version(version).err().unwrap().to_string();
            assert_eq!(
                error,
                format!(
                    "the adapter targets tally:billing@{version}; this host supports \
                     tally:billing@0.1.0 and tally:billing@0.2.0"
                )
            );
        }
    }
}

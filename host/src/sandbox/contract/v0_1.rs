//! `tally:billing@0.1.0` (`wit/v0.1`), served by adaptation onto the current
//! version's implementation.
//!
//! 0.1 is 0.2 without `output.append-for` and the `out-of-scope` output
//! error, and with a cap of 100 documents per run. Its `types` and `usage`
//! interfaces are the same, so its bindings use the current ones (and the
//! `usage` import is defined once more, under the 0.1 name); its `output`
//! and `log` imports convert and delegate to the host's implementation; its
//! exports are called through [`AdapterInstance`] with their types
//! converted.

use wasmtime::Store;
use wasmtime::component::{HasData, Linker};

use super::tally::billing::{log as current_log, output as current_output};
use super::{AdapterInstance, Contract, PreInstantiated};
use crate::sandbox::limits::RunState;

wasmtime::component::bindgen!({
    path: "../wit/v0.1",
    world: "billing-adapter",
    imports: { default: trappable },
    with: {
        "tally:billing/types@0.1.0": crate::sandbox::contract::tally::billing::types,
        "tally:billing/usage@0.1.0": crate::sandbox::contract::tally::billing::usage,
    },
});

/// The version served here.
pub const VERSION: &str = "0.1.0";

/// `tally:billing@0.1.0`.
pub(super) static CONTRACT: Contract = Contract {
    version: VERSION,
    max_documents: 100,
    add_imports,
    prepare: |pre| Ok(std::sync::Arc::new(BillingAdapterPre::new(pre)?)),
};

/// The 0.1 imports: `types` (its types are the current ones: an instance of
/// nothing), `usage` as the current one, `output` and `log` through
/// [`Adapted`].
fn add_imports(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    linker.instance(&format!("tally:billing/types@{VERSION}"))?;
    crate::sandbox::host_usage::add_to_linker(linker, VERSION)?;
    tally::billing::output::add_to_linker::<_, Adapted>(linker, adapted)?;
    tally::billing::log::add_to_linker::<_, Adapted>(linker, adapted)?;
    Ok(())
}

/// A run seen through the 0.1 imports: each call converted and delegated to
/// the host's implementation of the current version.
pub struct Adapted0_1<'a>(&'a mut RunState);

/// `state` through the 0.1 imports.
fn adapted(state: &mut RunState) -> Adapted0_1<'_> {
    Adapted0_1(state)
}

/// The [`HasData`] of [`Adapted0_1`].
struct Adapted;

impl HasData for Adapted {
    type Data<'a> = Adapted0_1<'a>;
}

impl tally::billing::output::Host for Adapted0_1<'_> {
    fn append(
        &mut self,
        document: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        let written = current_output::Host::append(self.0, document, content_type, bytes)?;
        Ok(written.map_err(OutputError::from))
    }

    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, SendError>> {
        let answer = current_output::Host::send(self.0, request.into())?;
        Ok(answer.map(Into::into).map_err(Into::into))
    }
}

impl tally::billing::log::Host for Adapted0_1<'_> {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => current_log::Level::Debug,
            Level::Info => current_log::Level::Info,
            Level::Warn => current_log::Level::Warn,
            Level::Error => current_log::Level::Error,
        };
        current_log::Host::write(self.0, level, message)
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
    fn describe(&self, store: &mut Store<RunState>) -> wasmtime::Result<super::Description> {
        Ok(self.tally_billing_adapter().call_describe(store)?.into())
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
        request: &super::ExportRequest,
        config: &str,
    ) -> wasmtime::Result<Result<super::Summary, super::ExportError>> {
        let request = ExportRequest::from(request.clone());
        let exported = self
            .tally_billing_adapter()
            .call_export(store, &request, config)?;
        Ok(exported.map(Into::into).map_err(Into::into))
    }
}

use self::exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Summary};
use self::tally::billing::log::Level;
use self::tally::billing::output::{OutboundRequest, OutboundResponse, OutputError, SendError};

/// `From` between two bindings of a WIT record whose fields did not change.
macro_rules! same_record {
    ($from:ty => $to:ty { $($field:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(value: $from) -> Self {
                Self { $($field: value.$field.into()),* }
            }
        }
    };
}

/// `From` between two bindings of a WIT variant whose cases (each with a
/// payload) did not change.
macro_rules! same_variant {
    ($from:ident => $to:ty { $($case:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(value: $from) -> Self {
                match value {
                    $($from::$case(payload) => Self::$case(payload.into()),)*
                }
            }
        }
    };
}

same_record!(OutboundRequest => current_output::OutboundRequest { method, url, headers, body });
same_record!(current_output::OutboundResponse => OutboundResponse { status, headers, body });
same_record!(super::ExportRequest => ExportRequest { run_id, window, granularity, correction });
same_record!(Description => super::Description { name, version, produces });
same_record!(Summary => super::Summary { rows_read, rows_written, documents });
same_variant!(ExportError => super::ExportError { InvalidConfig, Transient, Permanent });

use current_output::SendError as CurrentSendError;
same_variant!(CurrentSendError => SendError { NotAllowed, TooLarge, Timeout, Failed, LimitReached });

impl From<current_output::OutputError> for OutputError {
    fn from(error: current_output::OutputError) -> Self {
        match error {
            current_output::OutputError::LimitReached(cap) => OutputError::LimitReached(cap),
            current_output::OutputError::InvalidName(reason) => OutputError::InvalidName(reason),
            // A 0.1 adapter writes no document that belongs to a subscription,
            // so none of its writes meets one; said as 0.1 can say it.
            current_output::OutputError::OutOfScope(reason) => OutputError::InvalidName(reason),
        }
    }
}

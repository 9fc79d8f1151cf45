// Helpers that use the bindings, compiled into each Go adapter's package
// (adapters/go/build.sh copies this folder beside the adapter's own files).

package export_tally_billing_adapter

import (
	"errors"
	"fmt"

	"tally.example/kit"
	output "wit_component/tally_billing_output"
	usage "wit_component/tally_billing_usage"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
)

// queryErrorDebug is a query refusal as Rust's `{:?}` shows it
// (`QueryError::InvalidWindow("…")`): the Rust adapters' words.
func queryErrorDebug(e usage.QueryError) string {
	switch e.Tag() {
	case usage.QueryErrorInvalidWindow:
		return "QueryError::InvalidWindow(" + kit.RustDebugString(e.InvalidWindow()) + ")"
	case usage.QueryErrorOutOfScope:
		return "QueryError::OutOfScope(" + kit.RustDebugString(e.OutOfScope()) + ")"
	default:
		return "QueryError::Unavailable(" + kit.RustDebugString(e.Unavailable()) + ")"
	}
}

// outputErrorDebug is a write refusal as Rust's `{:?}` shows it.
func outputErrorDebug(e output.OutputError) string {
	switch e.Tag() {
	case output.OutputErrorLimitReached:
		return fmt.Sprintf("OutputError::LimitReached(%d)", e.LimitReached())
	case output.OutputErrorInvalidName:
		return "OutputError::InvalidName(" + kit.RustDebugString(e.InvalidName()) + ")"
	default:
		return "OutputError::OutOfScope(" + kit.RustDebugString(e.OutOfScope()) + ")"
	}
}

// outputError is a write refusal as Rust's `{:?}` shows it, or nil.
func outputError(result witTypes.Result[witTypes.Unit, output.OutputError]) error {
	if !result.IsErr() {
		return nil
	}
	return errors.New(outputErrorDebug(result.Err()))
}

package runtime

// Added by tally to the vendored runtime (not upstream).
//
// Go's collector reads the clocks and polls timers, and on wasip1 those are
// calls to host imports. A component may not call an import while the host
// allocates in it (cabi_realloc, when an import returns lists or strings):
// a collection that starts there traps the adapter with "cannot leave
// component instance". So automatic collection is off, and Collect runs it
// at a point where imports are allowed.

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

func init() {
	debug.SetGCPercent(-1)
}

// collectAt is the heap size that makes Collect collect.
var collectAt uint64 = 8 << 20

var heapObjects = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}

// Collect releases what the host handed over in earlier calls (the values
// lifted from it keep it alive as long as they are used) and, when the heap
// has doubled since the last collection, collects garbage. Call it from an
// export between import calls, e.g. after each usage batch: without it, an
// adapter's memory only grows during a call.
func Collect() {
	Unpin()
	metrics.Read(heapObjects)
	if heapObjects[0].Value.Uint64() < collectAt {
		return
	}
	runtime.GC()
	metrics.Read(heapObjects)
	collectAt = max(2*heapObjects[0].Value.Uint64(), 8<<20)
}

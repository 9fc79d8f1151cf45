// The hostile adapter of finding 12, in component-model text: a Rust guest
// cannot easily have several memories. Included (`include!`) by the tests
// and the RSS benchmark, which turn it into a component with the `wat` crate.

/// An adapter written in component-model text (a Rust guest cannot easily
/// have several memories): besides its main module's memory, `hogs` core
/// instances of their own, each with a memory. `export` grows the main
/// memory and each hog's by `pages` (64 KiB each), touching every 4 KiB, then
/// succeeds with an empty summary.
fn multi_memory_adapter(hogs: usize, pages: u32) -> Vec<u8> {
    let hog_instances: String = (0..hogs)
        .map(|i| format!("(core instance $h{i} (instantiate $hog))\n"))
        .collect();
    let hog_exports: String = (0..hogs)
        .map(|i| format!("(export \"g{i}\" (func $h{i} \"grow\"))"))
        .collect();
    let hog_imports: String = (0..hogs)
        .map(|i| format!("(import \"hogs\" \"g{i}\" (func $g{i} (param i32)))\n"))
        .collect();
    let hog_calls: String = (0..hogs)
        .map(|i| format!("(call $g{i} (i32.const {pages}))\n"))
        .collect();
    let wat = format!(
        r#"(component
  (core module $hog
    (memory 1)
    (func $grow (export "grow") (param $pages i32)
      (local $i i32)
      (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then (unreachable)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (i32.mul (memory.size) (i32.const 16))))
          (i32.store8 (i32.mul (local.get $i) (i32.const 4096)) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))))
  {hog_instances}
  (core instance $hogs {hog_exports})
  (core module $main
    {hog_imports}
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
      (global.set $heap (i32.add (local.get $at) (local.get 3)))
      (local.get $at))
    ;; description {{name "multi", version "0.1.0", produces []}}
    (data (i32.const 256) "\00\02\00\00\05\00\00\00\08\02\00\00\05\00\00\00\00\00\00\00\00\00\00\00")
    (data (i32.const 512) "multi")
    (data (i32.const 520) "0.1.0")
    (func (export "describe") (result i32) (i32.const 256))
    ;; ok(()) and ok({{0, 0, []}}): zeroed memory
    (func (export "validate-config") (param i32 i32) (result i32) (i32.const 768))
    (func (export "export") (param i32 i32 i64 i64 i32 i32 i32 i32) (result i32)
      (local $i i32)
      (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then (unreachable)))
      (local.set $i (i32.const 4))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (i32.mul (memory.size) (i32.const 16))))
          (i32.store8 (i32.mul (local.get $i) (i32.const 4096)) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      {hog_calls}
      (i32.const 1024)))
  (core instance $m (instantiate $main (with "hogs" (instance $hogs))))
  (type $window (record (field "start" s64) (field "end" s64)))
  (type $granularity (enum "hourly" "daily"))
  (type $description (record (field "name" string) (field "version" string) (field "produces" (list string))))
  (type $request (record (field "run-id" string) (field "window" $window) (field "granularity" $granularity) (field "correction" bool)))
  (type $summary (record (field "rows-read" u64) (field "rows-written" u64) (field "documents" (list string))))
  (type $error (variant (case "invalid-config" string) (case "transient" string) (case "permanent" string)))
  (func $describe (result $description)
    (canon lift (core func $m "describe") (memory $m "memory") (realloc (func $m "realloc"))))
  (func $validate (param "config" string) (result (result (error string)))
    (canon lift (core func $m "validate-config") (memory $m "memory") (realloc (func $m "realloc"))))
  (func $export (param "request" $request) (param "config" string) (result (result $summary (error $error)))
    (canon lift (core func $m "export") (memory $m "memory") (realloc (func $m "realloc"))))
  (component $interface
    (type $w (record (field "start" s64) (field "end" s64)))
    (import "import-type-window" (type $w' (eq $w)))
    (type $g (enum "hourly" "daily"))
    (import "import-type-granularity" (type $g' (eq $g)))
    (type $d (record (field "name" string) (field "version" string) (field "produces" (list string))))
    (import "import-type-description" (type $d' (eq $d)))
    (type $r (record (field "run-id" string) (field "window" $w') (field "granularity" $g') (field "correction" bool)))
    (import "import-type-export-request" (type $r' (eq $r)))
    (type $s (record (field "rows-read" u64) (field "rows-written" u64) (field "documents" (list string))))
    (import "import-type-summary" (type $s' (eq $s)))
    (type $e (variant (case "invalid-config" string) (case "transient" string) (case "permanent" string)))
    (import "import-type-export-error" (type $e' (eq $e)))
    (import "import-func-describe" (func $f1 (result $d')))
    (import "import-func-validate-config" (func $f2 (param "config" string) (result (result (error string)))))
    (import "import-func-export" (func $f3 (param "request" $r') (param "config" string) (result (result $s' (error $e')))))
    (export $we "window" (type $w'))
    (export $ge "granularity" (type $g'))
    (export $de "description" (type $d'))
    (type $r2 (record (field "run-id" string) (field "window" $we) (field "granularity" $ge) (field "correction" bool)))
    (export $re "export-request" (type $r2))
    (export $se "summary" (type $s'))
    (export $ee "export-error" (type $e'))
    (export "describe" (func $f1) (func (result $de)))
    (export "validate-config" (func $f2) (func (param "config" string) (result (result (error string)))))
    (export "export" (func $f3) (func (param "request" $re) (param "config" string) (result (result $se (error $ee))))))
  (instance $adapter (instantiate $interface
    (with "import-type-window" (type $window))
    (with "import-type-granularity" (type $granularity))
    (with "import-type-description" (type $description))
    (with "import-type-export-request" (type $request))
    (with "import-type-summary" (type $summary))
    (with "import-type-export-error" (type $error))
    (with "import-func-describe" (func $describe))
    (with "import-func-validate-config" (func $validate))
    (with "import-func-export" (func $export))))
  (export "tally:billing/adapter@0.1.0" (instance $adapter)))
"#
    );
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("{e}\n{wat}"))
}

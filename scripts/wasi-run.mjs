// Runs a wasm32-wasip1 program (a `cargo test` binary) under Node's built-in
// WASI, so the engine's unit tests run compiled to wasm32 exactly as the
// filter's code runs inside Envoy's V8.
//
// Used as cargo's runner (scripts/test.sh sets it):
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings scripts/wasi-run.mjs"
//   cargo test -p meshward-engine --target wasm32-wasip1
//
// Exit status: the program's own exit code; 134 when it aborts or traps
// (wasip1 has no unwinding, so a panicking test aborts the whole run; libtest
// has already printed which test panicked by then). Never 0 on a failure.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import { argv, env, exit, stderr } from "node:process";

const [, , wasmPath, ...args] = argv;
if (!wasmPath) {
  stderr.write("usage: node scripts/wasi-run.mjs PROGRAM.wasm [ARGS...]\n");
  exit(2);
}

const wasi = new WASI({
  version: "preview1",
  args: [wasmPath, ...args],
  env,
  // Tests may read fixtures relative to the crate directory (cargo runs test
  // binaries there); expose the current directory and nothing else.
  preopens: { ".": process.cwd() },
  returnOnExit: true,
});

let code;
try {
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  code = wasi.start(instance);
} catch (err) {
  // A Rust panic under wasip1 ends in `abort` -> an `unreachable` trap.
  stderr.write(`\nwasi-run: ${wasmPath} trapped: ${err && err.message ? err.message : err}\n`);
  code = 134;
}
exit(typeof code === "number" ? code : 1);

// Runs micro/test_modbus_rtu.py on the real MicroPython interpreter (the
// WebAssembly port from npm), so the micro/ code is checked against the
// MicroPython dialect and its heap, not just CPython.
// Usage: node tests/micro/run_micropython.mjs   (install: scripts/ensure-micropython.sh)
// Exit status: 0 all passed, 1 a test failed, 2 setup problem.

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..", "..");
const pkg = join(here, "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs");

let loadMicroPython;
try {
  ({ loadMicroPython } = await import(pkg));
} catch (err) {
  console.error(`cannot load ${pkg}: ${err.message}\nrun scripts/ensure-micropython.sh`);
  process.exit(2); // nothing printed yet that could be lost
}

// Line-buffered output straight through; pytest parses the summary line.
const mp = await loadMicroPython({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});

// Mirror the repo layout inside the wasm FS so the test opens the vectors by
// the same relative path as under CPython or `mpremote mount .`.
const files = ["micro/modbus_rtu.py", "micro/test_modbus_rtu.py", "tests/vectors/modbus_rtu_frames.json"];
for (const rel of files) {
  const dest = "/repo/" + rel;
  mp.FS.mkdirTree(dirname(dest));
  mp.FS.writeFile(dest, readFileSync(join(root, rel)));
}

try {
  // Import from the FS (not runPython of the source) so tracebacks name the
  // real files and the module is compiled the way a board would compile it.
  mp.runPython(`
import os, sys
os.chdir("/repo")
sys.path.insert(0, "/repo/micro")
import test_modbus_rtu
`);
} catch (err) {
  // PythonError carries the MicroPython traceback; any test failure lands here.
  console.error(err.message);
  // exitCode, not exit(): let buffered stdout/stderr drain first.
  process.exitCode = 1;
}

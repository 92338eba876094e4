"use strict";
// A real typed-ss server for the integration tests: tests/js_app.py, served by `python -m tests.serve` with
// the repository's .venv Python on 127.0.0.1 (`make test` creates the .venv first). Without it the tests
// that use it fail, never skip.

const path = require("node:path");
const { spawn } = require("node:child_process");
const readline = require("node:readline");

const REPO = path.resolve(__dirname, "..", "..", "..");
const PYTHON = path.join(REPO, ".venv", "bin", "python");
const DEFAULT_APP = "tests.js_app:app";

/**
 * Starts the server (on `port`, to restart one where it was; by default a port the OS picks) with `app` (a
 * module:attribute of the repository's tests); resolves with {url, port, child, stop, exited} once it printed
 * its port.
 */
function startServer(port = 0, app = DEFAULT_APP) {
  const args = ["-m", "tests.serve", app, "--set", "log_level=warning", "--port", String(port)];
  const child = spawn(PYTHON, args, { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (chunk) => {
    stderr += chunk;
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.once("line", (line) => {
      const match = /^PORT (\d+)$/.exec(line.trim());
      const port = match ? Number(match[1]) : NaN;
      if (!Number.isInteger(port) || port <= 0) {
        reject(new Error(`the server printed ${JSON.stringify(line)} instead of its port`));
        return;
      }
      resolve({ url: `ws://127.0.0.1:${port}/socket`, port, child, stop, exited });
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code} before printing its port:\n${stderr}`)));
  });
}

module.exports = { startServer, REPO };

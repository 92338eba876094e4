// The client generated for examples/typed_chat (examples/typed_chat/static/generated, committed and kept
// fresh by `make codegen-check`) against the real example server: `python -m tests.serve
// examples.typed_chat.app:app` with the repository's .venv Python on 127.0.0.1. Never skipped.

import test from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { WebSocket } from "ws";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..", "..");
const GENERATED = path.join(REPO, "examples", "typed_chat", "static", "generated");
const PYTHON = path.join(REPO, ".venv", "bin", "python");
const LIMIT = { timeout: 15000 };

const { connect, CONTRACT } = await import(pathToFileURL(path.join(GENERATED, "ss.client.js")).href);

function startServer() {
  const child = spawn(PYTHON, ["-m", "tests.serve", "examples.typed_chat.app:app", "--set", "log_level=warning"], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "pipe"],
  });
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
    readline.createInterface({ input: child.stdout }).once("line", (line) => {
      const match = /^PORT (\d+)$/.exec(line.trim());
      if (!match) reject(new Error(`the server printed ${JSON.stringify(line)} instead of its port`));
      else resolve({ url: `ws://127.0.0.1:${match[1]}/socket`, stop });
    });
    child.once("exit", (code) => reject(new Error(`the server exited with ${code}:\n${stderr}`)));
  });
}

let server = null;
test.before(async () => {
  server = await startServer();
});
test.after(async () => {
  if (server) await server.stop();
});

function open(t, connectTo = connect) {
  const client = connectTo(server.url, { WebSocket, reconnectOpts: { base: 20, cap: 100 } });
  const errors = [];
  client.onError((error) => errors.push(error));
  t.after(() => client.close());
  return { client, errors };
}

/** The next value handed to a listener that `register` adds; the listener is removed after it. */
function next(register) {
  return new Promise((resolve) => {
    const off = register((value) => {
      off();
      resolve(value);
    });
  });
}

async function joinRoom(client, room, name) {
  const joined = next((l) => client.on("joined", l));
  client.send.join({ room, name });
  assert.deepEqual(await joined, { room, name });
}

test("two generated clients chat in a room, typed payloads both ways", LIMIT, async (t) => {
  const { client: ann, errors } = open(t);
  const { client: bob } = open(t);
  await joinRoom(ann, "tea", "ann");
  const bobJoined = next((l) => ann.on("presence", l));
  await joinRoom(bob, "tea", "bob");
  assert.deepEqual(await bobJoined, { room: "tea", members: 2, who: "bob", joined: true });

  const line = next((l) => bob.on("said", l));
  ann.send.say({ text: "hello bob ✓" });
  const said = await line;
  assert.equal(said.author, "ann");
  assert.equal(said.text, "hello bob ✓");
  assert.equal(said.room, "tea");
  assert.ok(!Number.isNaN(Date.parse(said.sent_at)), said.sent_at);

  // A JSON string payload (Literal["typing", "idle"]): sent quoted, or the server would refuse it.
  const activity = next((l) => bob.on("activity", l));
  ann.send.status("typing");
  assert.deepEqual(await activity, { who: "ann", status: "typing" });
  assert.equal(ann.contractStatus, "current");
  assert.deepEqual(errors, []);
});

test("an invalid payload comes back as a typed server error", LIMIT, async (t) => {
  const { client } = open(t);
  const error = next((l) => client.onServerError(l));
  client.send.say({ text: "" });
  const { event, code, detail } = await error;
  assert.deepEqual([event, code], ["say", "invalid_payload"]);
  assert.match(detail, /\$\.text/);
});

test("a page generated from an older contract is told to reload and does not reconnect", LIMIT, async (t) => {
  // A copy of the generated client with another fingerprint: what a browser with a stale page runs.
  const dir = mkdtempSync(path.join(tmpdir(), "typed-chat-stale-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(GENERATED, dir, { recursive: true });
  const file = path.join(dir, "ss.client.js");
  const stale = "0".repeat(32);
  writeFileSync(file, readFileSync(file, "utf8").replaceAll(CONTRACT, stale));
  const staleModule = await import(pathToFileURL(file).href);
  assert.equal(staleModule.CONTRACT, stale);

  const { client, errors } = open(t, staleModule.connect);
  const info = await next((l) => client.onReloadNeeded(l));
  assert.deepEqual(info, { code: "reload_needed", closeCode: 4010, clientContract: stale, serverContract: CONTRACT });
  assert.equal(client.contractStatus, "stale");
  assert.equal(client.raw.reconnectOpts.enabled, false);
  assert.ok(errors.some((e) => e.code === "reload_needed"));
});

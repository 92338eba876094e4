// The generated client of tests/codegen/presence_app.py (a server with presence on) against a real server,
// under node: its presence API, onPresence and members.
//
//   node e2e_presence.mjs <generated module> <ws://host:port> <clients/js/package.json>
//
// tests/codegen/test_presence_codegen.py runs it for the --lang js output and for the --lang ts output
// compiled by tsc. Prints one line per check and exits 0 when all pass; any failure exits 1 with the reason.

import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [modulePath, base, packageJson] = process.argv.slice(2);
const { WebSocket } = createRequire(packageJson)("ws");
const { connect } = await import(pathToFileURL(modulePath).href);

const WAIT_MS = 10000;
const clients = [];
const errors = [];

/** A client of the user `name`, once connected (its __hello received). */
async function user(name) {
  const client = connect(base + "/socket?user=" + name, { WebSocket, reconnectOpts: { enabled: false } });
  client.onError((error) => errors.push(error));
  clients.push(client);
  await until(() => client.connected && client.id !== null && client.contractStatus === "current", name + " connected");
  return client;
}

async function until(condition, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

async function check(name, body) {
  await body();
  console.log("ok - " + name);
}

const byName = (a, b) => (a.presence.name < b.presence.name ? -1 : 1);

try {
  const ann = await user("ann");
  const bob = await user("bob");
  const carol = await user("carol");
  const admin = await user("admin");

  await check("onPresence: the joiner hears of itself, then of the others joining and leaving", async () => {
    const events = [];
    const once = [];
    ann.onPresence((event) => events.push(event));
    const off = ann.onPresence((event) => once.push(event));
    await ann.call.join("chat:tea");
    await until(() => events.length === 1, "ann's own joined");
    off();
    assert.deepEqual(events[0], { room: "chat:tea", change: "joined", socket: ann.id, presence: { name: "ann", status: "online" } });
    await bob.call.join("chat:tea");
    await until(() => events.length === 2, "bob's joined");
    assert.deepEqual(events[1], { room: "chat:tea", change: "joined", socket: bob.id, presence: { name: "bob", status: "online" } });
    await bob.call.leave("chat:tea");
    await until(() => events.length === 3, "bob's left");
    assert.equal(events[2].change, "left");
    assert.equal(events[2].socket, bob.id);
    assert.equal(once.length, 1);
  });

  await check("members lists the room, each member with its payload", async () => {
    await bob.call.join("chat:tea");
    await bob.call.away();
    const listed = await ann.members("chat:tea");
    assert.deepEqual(listed.missing, []);
    assert.equal(listed.truncated, false);
    const members = listed.members.sort(byName);
    assert.deepEqual(
      members.map((m) => [m.socket, m.presence]),
      [
        [ann.id, { name: "ann", status: "online" }],
        [bob.id, { name: "bob", status: "away" }],
      ],
    );
    assert.equal(typeof members[0].instance, "string");
    assert.equal(members[0].instance, members[1].instance);
  });

  await check("members is refused to who the server refuses, and allowed to who it allows", async () => {
    await assert.rejects(carol.members("chat:tea"), (error) => error.name === "ServerError" && error.code === "forbidden");
    const listed = await admin.members("chat:tea", { timeout: 5000 });
    assert.deepEqual(listed.members.map((m) => m.presence.name).sort(), ["ann", "bob"]);
    await assert.rejects(carol.members(""), (error) => error.code === "bad_data");
    assert.ok(carol.connected);
  });

  await check("the plain client underneath has the same", async () => {
    const listed = await ann.raw.members("chat:tea");
    assert.equal(listed.members.length, 2);
  });

  assert.deepEqual(errors, []);
  console.log("ok - no errors reported");
} catch (error) {
  console.log("not ok - " + (error && error.stack ? error.stack : error));
  process.exitCode = 1;
} finally {
  for (const client of clients) client.close();
}

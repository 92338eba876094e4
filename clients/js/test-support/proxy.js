"use strict";
// A TCP proxy on 127.0.0.1 that can cut its connections: both sides dropped at once, without a WebSocket
// close, as when a network fails. Connections made after a cut work normally.

const net = require("node:net");

/** Starts a proxy to 127.0.0.1:`port`; resolves with {port, cut, stop}. */
function startProxy(port) {
  const links = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    const link = [client, upstream];
    links.add(link);
    client.pipe(upstream);
    upstream.pipe(client);
    const drop = () => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop);
    upstream.on("error", drop);
    client.on("close", drop);
    upstream.on("close", drop);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: server.address().port,
        /** Drops every open connection (a TCP reset on both sides); returns how many. */
        cut() {
          const count = links.size;
          for (const [client, upstream] of links) {
            client.resetAndDestroy();
            upstream.resetAndDestroy();
          }
          links.clear();
          return count;
        },
        stop() {
          this.cut();
          return new Promise((done) => server.close(done));
        },
      });
    });
  });
}

module.exports = { startProxy };

import assert from "node:assert/strict";
import { Server, ServerCredentials } from "@grpc/grpc-js";
import { connect } from "node:http2";
import { describe, it } from "node:test";
import { silentLogger } from "../../common/src/logger.js";
import { BROKER_HTTP2_WINDOW_BYTES, widenInitialWindow, widenSessionWindows } from "../../broker/src/grpc/flow-window.js";

describe("broker HTTP/2 flow-control window", () => {
  it("advertises a 16 MiB stream window and widens the connection window (fails if grpc-js internals move)", async () => {
    const server = new Server();
    assert.equal(widenInitialWindow(server, silentLogger), true);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    assert.equal(widenSessionWindows(server, silentLogger), true);
    const client = connect(`http://127.0.0.1:${port}`);
    client.on("error", () => undefined); // the forced shutdown below resets the session
    try {
      await new Promise<void>((resolve) => client.once("remoteSettings", () => resolve()));
      assert.equal(client.remoteSettings.initialWindowSize, BROKER_HTTP2_WINDOW_BYTES);
      const deadline = Date.now() + 2000;
      while ((client.state.remoteWindowSize ?? 0) < BROKER_HTTP2_WINDOW_BYTES && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok((client.state.remoteWindowSize ?? 0) >= BROKER_HTTP2_WINDOW_BYTES, `connection window ${client.state.remoteWindowSize}`);
    } finally {
      await new Promise<void>((resolve) => client.close(() => resolve()));
      server.forceShutdown();
    }
  });
});

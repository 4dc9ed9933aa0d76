import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { isBindRace, launchOnFreePorts } from "./free-port-launch.js";

describe("isBindRace", () => {
  it("finds a taken port in the error or any of its causes, as a cluster node's abort carries it", () => {
    const exited = new Error("nats-server exited (code 1, signal null)\n--- output ---\n[FTL] Error listening on router port: 33391 - listen tcp 127.0.0.1:33391: bind: address already in use");
    const abort = new DOMException("The operation was aborted", "AbortError");
    Object.defineProperty(abort, "cause", { value: exited });
    assert.equal(isBindRace(abort), true);
    assert.equal(isBindRace(new Error("wrapped", { cause: new Error("FATAL: could not bind IPv4 address") })), true);
    assert.equal(isBindRace(new Error("nats-server exited (code 1)", { cause: new Error("permission denied") })), false);
    assert.equal(isBindRace(undefined), false);
  });
});

describe("launchOnFreePorts", () => {
  it("tries again on new ports after a bind race and gives up on any other failure", async () => {
    let picks = 0;
    let output = "";
    await launchOnFreePorts({
      pick: async () => {
        picks++;
      },
      launch: async () => {
        if (picks < 2) {
          output = "listen tcp 127.0.0.1:4222: bind: address already in use";
          throw new Error("exited");
        }
      },
      output: () => output,
    });
    assert.equal(picks, 2);
    await assert.rejects(
      launchOnFreePorts({ pick: async () => {}, launch: async () => Promise.reject(new Error("bad config")), output: () => "bad config" }),
      /bad config/,
    );
  });
});

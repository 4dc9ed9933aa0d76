import assert from "node:assert/strict";
import { describe, it } from "vitest";
import { imageNodeMajor, runtimeNote } from "./runtime.js";

describe("runtime note", () => {
  it("reads the images' Node.js major from the Dockerfile's NODE_IMAGE argument", () => {
    assert.equal(imageNodeMajor("# node:18 in a comment\nARG NODE_IMAGE=node:24-bookworm-slim@sha256:abc\nFROM ${NODE_IMAGE}\n"), 24);
    assert.equal(imageNodeMajor("FROM node:22\n"), undefined);
  });

  it("says when the services ran on another major than the images ship, and not otherwise", () => {
    assert.match(runtimeNote("v20.19.0", 24), /Node\.js v20\.19\.0 .*the images ship Node\.js 24: figures from another major are not production's/);
    assert.equal(runtimeNote("v24.18.0", 24), "The services ran on Node.js v24.18.0 (the harness's own runtime), the major the images ship.");
    assert.equal(runtimeNote("v24.18.0", undefined), "The services ran on Node.js v24.18.0 (the harness's own runtime).");
  });
});
